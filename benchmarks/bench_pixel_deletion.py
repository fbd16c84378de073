"""Cost of pixel deletion relative to the forward passes it cannot avoid.

Pixel deletion of B images with S steps needs B * (S + 1) forward passes. This script prints

* the cost ratio: pixel deletion time / time of those plain forward passes, batched the same way
  (goal <= 1.2: ranking, masking, blurring and scoring are nearly free);
* the bookkeeping alone: pixel deletion with the model replaced by a constant, as a share of the
  forward passes;
* the batching speed-up: pixel deletion one step at a time (``batch_size=1``) / batched.

Times are the minimum over ``--repeats`` runs after a warm-up. Run it on a quiet machine:

    python benchmarks/bench_pixel_deletion.py            # vit_tiny_patch16_224, 224x224
    python benchmarks/bench_pixel_deletion.py --quick    # a tiny ViT, seconds on a laptop
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from dave_lightning.metrics.functional import pixel_deletion


class Constant(nn.Module):
    """Stands in for the model to time the bookkeeping alone."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.new_zeros(images.shape[0], self.num_classes)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny ViT and sizes, for a smoke run")
    parser.add_argument("--images", type=int, help="images per call (default 4; quick 2)")
    parser.add_argument("--steps", type=int, help="deletion steps (default 20; quick 8)")
    parser.add_argument("--batch-size", type=int, help="copies per forward (default 64; quick 16)")
    parser.add_argument("--repeats", type=int, help="timed runs, minimum kept (default 3; quick 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    quick = {"images": 2, "steps": 8, "batch_size": 16, "repeats": 5}
    full = {"images": 4, "steps": 20, "batch_size": 64, "repeats": 3}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def build_model(quick: bool) -> tuple[nn.Module, int, str]:
    if quick:
        model = VisionTransformer(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10
        )
        return model, 32, "tiny VisionTransformer (32x32, depth 2, width 32)"
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    return model, 224, "vit_tiny_patch16_224 (224x224)"


def timed(run: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def best_times(
    runs: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Minimum time of each run; the runs take turns, so slow drifts hit them alike."""
    for run in runs.values():
        run()  # warm-up
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run, device))
    return best


def plain_forwards(model: nn.Module, images: torch.Tensor, copies: int, batch_size: int) -> None:
    """The same number of rows, in the same batch sizes, as pixel deletion evaluates."""
    with torch.no_grad():
        for start in range(0, copies, batch_size):
            rows = min(batch_size, copies - start)
            index = torch.arange(start, start + rows, device=images.device) % images.shape[0]
            model(images.index_select(0, index))


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, size, description = build_model(args.quick)
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, size, size, generator=generator).to(device)
    maps = torch.randn(args.images, size, size, generator=generator).to(device)
    target = torch.arange(args.images, device=device) % 10
    copies = args.images * (args.steps + 1)

    def deletion(batch_size: int, net: nn.Module = model) -> Callable[[], object]:
        return lambda: pixel_deletion(
            net, images, maps, target, steps=args.steps, batch_size=batch_size
        )

    times = best_times(
        {
            "forward": lambda: plain_forwards(model, images, copies, args.batch_size),
            "batched": deletion(args.batch_size),
            "bookkeeping": deletion(args.batch_size, Constant(1000)),
            "one_at_a_time": deletion(1),
        },
        args.repeats,
        device,
    )
    forward, batched = times["forward"], times["batched"]
    bookkeeping, one_at_a_time = times["bookkeeping"], times["one_at_a_time"]

    threads = torch.get_num_threads()
    print(f"model: {description}; device {device}; {threads} CPU threads")
    print(
        f"{args.images} images x {args.steps + 1} steps = {copies} forward passes, "
        f"batch size {args.batch_size}, blur 31x31 sigma 7, min of {args.repeats} runs"
    )
    print(f"plain forward passes       : {forward / args.images * 1e3:9.2f} ms/image")
    print(
        f"pixel deletion, batched    : {batched / args.images * 1e3:9.2f} ms/image   "
        f"cost ratio {batched / forward:5.2f}  (goal <= 1.20)"
    )
    print(
        f"bookkeeping alone          : {bookkeeping / args.images * 1e3:9.2f} ms/image   "
        f"share {bookkeeping / forward:5.2f} of the forward passes"
    )
    print(
        f"pixel deletion, 1 at a time: {one_at_a_time / args.images * 1e3:9.2f} ms/image   "
        f"batching speed-up {one_at_a_time / batched:5.2f}x"
    )
    if args.quick:
        print(
            "quick mode checks that the script runs: the toy model is so cheap that fixed costs "
            "dominate, so its ratios say little about a real ViT"
        )


if __name__ == "__main__":
    main()
