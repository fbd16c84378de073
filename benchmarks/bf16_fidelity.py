"""Is bf16 DAVE faithful to float32 DAVE? The measurement behind the precision default (issue 16).

On small ViTs trained on the embedded dataset (``benchmarks/_trained.py``), DAVE explains the same
probe images (the first ``--images`` validation images the model gets right, target = label) four
times: in float32 with seeds 0 and 1, and under bf16 autocast with seeds 0 and 1. Reported:

* ``corr(bf16, fp32 same seed)``: how far bf16's rounding moves the maps (mean over images of the
  Pearson correlation of two maps);
* ``corr(bf16, fp32 other seed)`` next to ``corr(fp32, fp32 other seed)``: when they are equal,
  bf16's error is lost in DAVE's own Monte-Carlo noise (the issue's H200 figures with the first
  build: 0.996, and 0.818 against 0.819);
* per metric the paired difference bf16 − float32 (same seed) next to float32 seed 1 − seed 0, in
  points, mean ± standard error over images (GridPG: over cells): what the monitor would log;
* seconds per DAVE call in each precision on this device (one call each, after a warm-up).

``--timm vit_small_patch16_224`` adds a full-size timm ViT (random weights: no downloads here) on
photographs from ``scikit-image`` (target: its top class): correlations and times only (the
photographs have no boxes), to see whether bf16's error grows with depth and resolution.

Run (one thread by default; a first run trains and caches the models, a few minutes):

    PYTHONPATH=$PWD python benchmarks/bf16_fidelity.py                  # CPU, N = 64
    PYTHONPATH=$PWD python benchmarks/bf16_fidelity.py --device cuda    # a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch
from _trained import trained_classifier
from noise_alpha_evidence import METRICS, ProbeSet, correct_probe, mean_se, score
from torch import Tensor, nn

from dave_lightning import DAVE


def correlation(first: Tensor, second: Tensor) -> float:
    """Mean over images of the Pearson correlation of two maps."""
    a = first.flatten(1).double()
    b = second.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


def run_precision(
    model: nn.Module, data: ProbeSet, seed: int, dtype: torch.dtype | None, num_samples: int
) -> tuple[dict[str, Tensor], float]:
    """Scores and maps of one DAVE run, and the seconds its image maps took (seed 0 only)."""
    dave = DAVE(model, num_samples=num_samples, seed=seed, autocast_dtype=dtype)
    seconds = math.nan
    if seed == 0:
        dave.attribute(data.images[:2], data.labels[:2])  # warm-up
        start = time.perf_counter()
        dave.attribute(data.images, data.labels, image_ids=data.ids)
        if data.images.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return score(dave, model, data, 0), seconds  # one deletion seed: only DAVE varies


def tensors_to(record: object, device: torch.device) -> dict[str, Tensor]:
    """The tensor fields of a dataclass, moved to ``device``."""
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    return {name: value.to(device) for name, value in fields.items() if isinstance(value, Tensor)}


PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field")


def photographs(model: nn.Module) -> Tensor:
    """scikit-image's colour photographs, preprocessed the way the timm model expects."""
    from PIL import Image
    from skimage import data as samples
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=model))
    return torch.stack(
        [transform(Image.fromarray(getattr(samples, name)())) for name in PHOTOGRAPHS]
    )


def timm_correlations(name: str, num_samples: int, device: torch.device) -> None:
    """bf16 against float32 DAVE maps of a random-weight timm model on photographs."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval().to(device)
    images = photographs(model).to(device)
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps, seconds = {}, {}
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for seed in (0, 1):
            dave = DAVE(model, num_samples=num_samples, seed=seed, autocast_dtype=dtype)
            start = time.perf_counter()
            maps[label, seed] = dave.attribute(images, targets)
            seconds[label, seed] = time.perf_counter() - start
    print(f"\n### {name} (random weights, {len(images)} photographs)")
    print(f"corr(bf16, fp32 same seed)   {correlation(maps['bf16', 0], maps['fp32', 0]):.4f}")
    print(f"corr(bf16, fp32 other seed)  {correlation(maps['bf16', 0], maps['fp32', 1]):.4f}")
    print(f"corr(fp32, fp32 other seed)  {correlation(maps['fp32', 0], maps['fp32', 1]):.4f}")
    print(f"corr(bf16, bf16 other seed)  {correlation(maps['bf16', 0], maps['bf16', 1]):.4f}")
    fp32_seconds, bf16_seconds = seconds["fp32", 1], seconds["bf16", 1]  # seed 0 warmed up
    print(
        f"\nseconds per DAVE call: fp32 {fp32_seconds:.1f}, bf16 {bf16_seconds:.1f} "
        f"(bf16 / fp32 = {bf16_seconds / fp32_seconds:.2f})"
    )


def report(name: str, runs: dict[tuple[str, int], tuple[dict[str, Tensor], float]]) -> None:
    fp32, fp32_other = runs[("fp32", 0)][0], runs[("fp32", 1)][0]
    bf16, bf16_other = runs[("bf16", 0)][0], runs[("bf16", 1)][0]
    print(f"\n### {name}")
    print(f"corr(bf16, fp32 same seed)   {correlation(bf16['maps'], fp32['maps']):.4f}")
    print(f"corr(bf16, fp32 other seed)  {correlation(bf16['maps'], fp32_other['maps']):.4f}")
    print(f"corr(fp32, fp32 other seed)  {correlation(fp32['maps'], fp32_other['maps']):.4f}")
    print(f"corr(bf16, bf16 other seed)  {correlation(bf16['maps'], bf16_other['maps']):.4f}")
    print("\n| metric (points) | fp32 seed 0 | bf16 − fp32, same seed | fp32 seed 1 − seed 0 |")
    print("|---|---|---|---|")
    for key, title, _ in METRICS:
        base = mean_se(fp32[key])
        precision = mean_se(bf16[key] - fp32[key])
        seeds = mean_se(fp32_other[key] - fp32[key])
        print(
            f"| {title} | {base[0]:.1f} ± {base[1]:.1f} | {precision[0]:+.2f} ± {precision[1]:.2f} "
            f"| {seeds[0]:+.2f} ± {seeds[1]:.2f} |"
        )
    fp32_seconds, bf16_seconds = runs[("fp32", 0)][1], runs[("bf16", 0)][1]
    print(
        f"\nseconds per DAVE call (image maps): fp32 {fp32_seconds:.2f}, bf16 {bf16_seconds:.2f} "
        f"(bf16 / fp32 = {bf16_seconds / fp32_seconds:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["normal", "spurious"])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--grids", type=int, default=8)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--timm", nargs="*", default=[], help="timm models on photographs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, N = {args.num_samples}, {args.images} images, {args.grids} grids")
    for name in args.models:
        module, val = trained_classifier(name, seed=0)
        model = module.model
        data = correct_probe(model, val, args.images, args.grids, seed=0)
        model.to(device)
        data.images, data.labels = data.images.to(device), data.labels.to(device)
        data.boxes = [box.to(device) for box in data.boxes]
        data.grids = dataclasses.replace(data.grids, **tensors_to(data.grids, device))
        runs = {
            (label, seed): run_precision(model, data, seed, dtype, args.num_samples)
            for label, dtype in (("fp32", None), ("bf16", torch.bfloat16))
            for seed in (0, 1)
        }
        report(f"{name} (accuracy {data.accuracy:.2f})", runs)
    for name in args.timm:
        timm_correlations(name, args.num_samples, device)


if __name__ == "__main__":
    main()
