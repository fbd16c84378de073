"""Cost of the warp's deterministic adjoint against the library's grid_sample (issue 15, item 1).

Times ``F.grid_sample`` forward + backward (the library adjoint: atomics on CUDA, one thread per
image on the CPU) and ``deterministic_grid_sample`` forward + backward (same forward, explicit
adjoint accumulated in a fixed order) on DAVE's default transform distribution, interleaved, and
prints the median of each and their ratio. The library path is what DAVE keeps on the CPU; the
explicit one is what it uses on every other device.

Run:
    python benchmarks/bench_warp.py                       # CPU, 16 and 64 images at 224
    python benchmarks/bench_warp.py --device cuda --batches 64 256
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _timing import seconds

from dave_lightning._bilinear_warp import deterministic_grid_sample
from dave_lightning.transforms import LocalTransformDistribution, affine_matrices, slot_seed


def _forward_backward(sample: Callable, images: torch.Tensor, grid, upstream) -> Callable:
    def run() -> torch.Tensor:
        leaf = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(sample(leaf, grid), leaf, upstream)
        return grad

    return run


def _library(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def measure(batch: int, size: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median seconds of (library, explicit) forward + backward, measured alternately."""
    params = LocalTransformDistribution().sample([slot_seed(0, i, 1) for i in range(batch)])
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    upstream = torch.randn(batch, 3, size, size, generator=generator).to(device)
    theta = affine_matrices(params, size, size).to(device=device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    library = _forward_backward(_library, images, grid, upstream)
    explicit = _forward_backward(deterministic_grid_sample, images, grid, upstream)
    difference = float((library() - explicit()).abs().max())  # also the warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(seconds(library, device))
        times[1].append(seconds(explicit, device))
    print(f"    (largest gradient difference {difference:.1e})")
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"warp forward + backward, 3x{args.size}x{args.size}, {device}, median of {args.repeats}")
    print(f"{'images':>7} {'grid_sample s':>14} {'explicit s':>11} {'ratio':>6}")
    for batch in args.batches:
        library, explicit = measure(batch, args.size, device, args.repeats)
        print(f"{batch:>7} {library:>14.4f} {explicit:>11.4f} {explicit / library:>6.2f}")


if __name__ == "__main__":
    main()
