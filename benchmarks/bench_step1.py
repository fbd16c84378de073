"""Step I's cost against the plain backward it replaces, per dtype (issue 16, Step I items).

Times one input-gradient pass (forward + backward of the target logits) of a timm ViT with
random weights, plain and inside ``effective_mode``, measured alternately in one run, in float32
and under bf16 autocast, and prints the medians and the ratio effective / plain (goal <= 1.0).
With ``--library-attention`` the effective pass uses the library's attention backward instead
of the value-only one (what today's main did under autocast and off the CPU), for comparison.

Run:
    python benchmarks/bench_step1.py                                  # CPU, ViT-Ti/16 at 224
    python benchmarks/bench_step1.py --device cuda --model vit_base_patch16_224 --batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable

import timm
import torch
from _timing import seconds
from torch import nn

from dave_lightning import _value_only_attention, effective_mode


def _gradient_pass(
    model: nn.Module, images: torch.Tensor, dtype: torch.dtype | None, effective: bool
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        leaf = images.clone().requires_grad_(True)
        with contextlib.ExitStack() as stack:
            if effective:
                stack.enter_context(effective_mode(model))
            autocast = torch.autocast(images.device.type, dtype=dtype or torch.bfloat16)
            with autocast if dtype is not None else contextlib.nullcontext():
                logits = model(leaf)
            (grad,) = torch.autograd.grad(logits[:, 0].sum(), leaf)
        return grad

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="vit_tiny_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--library-attention", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.library_attention:  # never reroute: the library's attention backward throughout
        _value_only_attention._reroutable = lambda args, kwargs: False  # type: ignore[assignment]
    model = timm.create_model(args.model, pretrained=False).to(device).eval()
    size = model.default_cfg["input_size"][1:]
    images = torch.randn(args.batch, 3, *size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    print(f"{args.model}, batch {args.batch}, {device}, median of {args.repeats}")
    print(f"{'dtype':>9} {'plain s':>9} {'effective s':>12} {'ratio':>6}")
    for name, dtype in (("float32", None), ("bf16", torch.bfloat16)):
        plain = _gradient_pass(model, images, dtype, effective=False)
        effective = _gradient_pass(model, images, dtype, effective=True)
        plain(), effective()  # warm-up
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(args.repeats):
            times[0].append(seconds(plain, device))
            times[1].append(seconds(effective, device))
        first, second = statistics.median(times[0]), statistics.median(times[1])
        print(f"{name:>9} {first:>9.3f} {second:>12.3f} {second / first:>6.2f}")


if __name__ == "__main__":
    main()
