"""The DAVE paper's comparison, reproduced on small ViTs trained here (issue 8).

Trains (or loads from ``benchmarks/.cache``) the demo's CPU-sized ViT (64x64 images, 8x8 patches,
width 96, depth 4) on the embedded shapes data, normally and with the class-coloured spurious
mark, and scores every registered attribution method on the same probe images:

* **GridPG** (higher is better, chance 25 %): 2x2 full-resolution grids (128x128, the model has
  ``dynamic_img_size``) of four distinct classes from validation images the model classifies
  correctly with softmax >= 0.9 (the paper's filter; lowered to 0.5, then to "correct", when too
  few images pass it, and the output says so); every cell is explained and is one item. The
  header line says how much softmax the model puts on a grid's four classes: near chance, the
  model does not recognise the cells and GridPG says little about the maps.
* **EnergyPG** (higher is better): positive attribution inside the object's box.
* **mark share** (spurious model only): EnergyPG with the mark's box. The model uses the mark, so
  a faithful map puts mass there: this is the shortcut's fingerprint.
* **pixel deletion** in both orders, target softmax probability, AUC normalised by the removed
  range: most relevant first (lower is better), least relevant first (the paper's script; higher
  is better), up to 90 % of the pixels. Removed pixels take a blurred copy of the image, the
  paper's 31x31, sigma 7 Gaussian by default. On 64-pixel images that blur erases a shape (it is
  a removal); ``--blur-kernel 9 --blur-sigma 2`` scales it down from the paper's 224 pixels, and
  then a removed pixel inside a flat shape keeps its colour, which favours maps that point at
  edges over maps that cover the whole object.
* **patch artifact** (lower is better): the share of a map's non-DC spectral energy on the 8x8
  patch lattice; the white-noise chance level is printed beside it.
* **ms / image**: attribution of the probe images only, measured in the same run: wall clock and,
  in brackets, the process's CPU time, which a busy machine does not inflate (with
  ``--threads 1`` it estimates the wall time on a quiet machine).

Probe images are validation images the model classifies correctly with softmax >= 0.9 (the
paper's filter for pixel deletion); the models train with label smoothing 0.1, which caps the
softmax near 0.92, so a weak model may have too few, and the most confident correct images fill
the probe (the output says so). Every table shows mean ± standard error over images.
DAVE uses the paper's Steps I-III (flip, ±20°, ±10 %, scale 0.9-1.1, robust mean) with ``N``
samples and a noise level calibrated on the probe images (``noise_alpha="auto"``; the tiny model
is not in the paper's table). Two ablations show what Steps II and III add over Step I alone
(``effective_input_x_gradient``): DAVE without the warps and DAVE without the noise. The header
also reports how the model fares under Step II's warps: DAVE averages evidence over them, so it
can only show evidence the model still uses on warped images.

Run (from the repository root, with the package importable, e.g. ``PYTHONPATH=$PWD``):
    python benchmarks/compare_methods.py --quick --threads 2  # about 2 min on 2 quiet cores
    python benchmarks/compare_methods.py --threads 2          # N = 50, 32 images: about 5 min
    python benchmarks/compare_methods.py --quick --methods dave legrad random --no-ablations

The first run also trains the models (quick: about 1 min on 2 cores; full: a few minutes),
then caches them in ``benchmarks/.cache``. Tables go to stdout as markdown.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from _compare_eval import (
    DeletionSetup,
    MethodScores,
    Probe,
    box_area_share,
    build_grids,
    frame_visibility,
    grid_recognition,
    mean_and_error,
    mean_visibility,
    score_method,
    select_probe,
    warp_robustness,
)
from _trained import SETTINGS, config_for, trained_classifier
from torch import nn

from dave_lightning import calibrate_noise_alpha
from dave_lightning.data import SyntheticShapes
from dave_lightning.data.grids import GridBatch
from dave_lightning.metrics.functional import patch_artifact_chance_level
from dave_lightning.registry import available_attributors, get_attributor

NO_WARP = {"flip_prob": 0.0, "rotation": 0.0, "translation": 0.0, "scale": (1.0, 1.0)}
QUICK = {"images": 24, "num_samples": 16, "ig_steps": 16, "steps": 32, "grids": 6}
FULL = {"images": 32, "num_samples": 50, "ig_steps": 50, "steps": 128, "grids": 8}
COLUMNS = (  # key, header, scale, digits
    ("grid", "GridPG % ↑", 100, 1),
    ("energy", "EnergyPG % ↑", 100, 1),
    ("mark", "mark share %", 100, 1),
    ("most_first", "deletion MoRF AUC ↓", 1, 3),
    ("least_first", "deletion LeRF AUC ↑", 1, 3),
    ("artifact", "patch artifact ↓", 1, 3),
)


@dataclass(frozen=True)
class Row:
    """One line of a table: a registered method and the options it is built with."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller models, probe and N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--images", type=int, help="probe images (quick 24, default 32)")
    parser.add_argument("--num-samples", type=int, help="DAVE's N and SmoothGrad's (16 / 50)")
    parser.add_argument("--ig-steps", type=int, help="Integrated Gradients steps (16 / 50)")
    parser.add_argument("--steps", type=int, help="pixel-deletion steps (32 / 128)")
    parser.add_argument("--grids", type=int, help="2x2 grids, every cell explained (6 / 8)")
    parser.add_argument("--blur-kernel", type=int, default=31, help="deletion blur size (31)")
    parser.add_argument("--blur-sigma", type=float, default=7.0, help="deletion blur sigma (7)")
    parser.add_argument("--noise-alpha", default="auto", help="DAVE's level, or 'auto'")
    parser.add_argument("--methods", nargs="+", default=list(available_attributors()))
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(SETTINGS),
        default=["normal", "spurious"],
        help="trained models to compare (default: normal spurious)",
    )
    parser.add_argument("--no-ablations", action="store_true", help="skip the DAVE ablations")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = set(args.methods) - set(available_attributors())
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; available: {available_attributors()}")
    return args


def rows_for(args: argparse.Namespace, noise_alpha: float) -> Iterator[Row]:
    """The methods of the table, with the cost options the run uses."""
    cost = {
        "dave": {"num_samples": args.num_samples, "noise_alpha": noise_alpha},
        "smoothgrad": {"nt_samples": args.num_samples},
        "integrated_gradients": {"n_steps": args.ig_steps},
    }
    for method in args.methods:
        yield Row(method, method, cost.get(method, {}))
    if "dave" in args.methods and not args.no_ablations:
        yield Row("dave, Steps I+III (no warp)", "dave", {**cost["dave"], **NO_WARP})
        yield Row("dave, Steps I+II (no noise)", "dave", {**cost["dave"], "noise_alpha": 0.0})


def choose_noise_alpha(args: argparse.Namespace, model: nn.Module, probe: Probe) -> float:
    if args.noise_alpha != "auto":
        return float(args.noise_alpha)
    alpha, _ = calibrate_noise_alpha(model, probe.images, probe.labels)
    return alpha


def cell(values: torch.Tensor | None, scale: float, digits: int) -> str:
    if values is None:
        return "–"
    mean, error, _ = mean_and_error(values)
    return "nan" if math.isnan(mean) else f"{mean * scale:.{digits}f} ± {error * scale:.{digits}f}"


def print_table(results: dict[str, MethodScores]) -> None:
    present = [c for c in COLUMNS if any(c[0] in r.values for r in results.values())]
    print("| method | " + " | ".join(c[1] for c in present) + " | ms / image wall (CPU) |")
    print("|---" * (len(present) + 2) + "|")
    for label, scores in results.items():
        cells = [cell(scores.values.get(key), scale, digits) for key, _, scale, digits in present]
        wall, cpu = scores.seconds_per_image * 1e3, scores.cpu_seconds_per_image * 1e3
        print(f"| {label} | " + " | ".join(cells) + f" | {wall:.1f} ({cpu:.1f}) |")


@torch.no_grad()
def accuracy(model: nn.Module, dataset: SyntheticShapes) -> float:
    samples = [dataset.sample(i) for i in range(len(dataset))]
    images = torch.stack([s.image for s in samples])
    labels = torch.tensor([s.label for s in samples])
    return float((model(images).argmax(dim=1) == labels).float().mean())


def test_accuracy(model: nn.Module, name: str, quick: bool) -> str:
    """Test-split accuracy (the shortcut model's: mark as in training, none, random colour)."""
    config = config_for(name, quick)
    cues = ("correlated", "absent", "uncorrelated") if config.spurious else ("absent",)
    parts = []
    for cue in cues:
        dataset = SyntheticShapes(
            "test",
            length=config.val_size,
            seed=config.seed,
            image_size=config.image_size,
            spurious=config.spurious,
            eval_cue=cue,
            cue_placement="inset",
        )
        label = f"{cue} mark" if config.spurious else "clean"
        parts.append(f"{label} {accuracy(model, dataset):.2f}")
    return "test accuracy: " + ", ".join(parts)


def describe_grids(model: nn.Module, grids: GridBatch, threshold: float) -> str:
    if not len(grids):
        return f"- GridPG skipped: {grids.reason}."
    recognition = grid_recognition(model, grids)
    return (
        f"- GridPG: {len(grids)} grids x 4 cells from the {grids.num_eligible} images correct "
        f"{f'with p >= {threshold}' if threshold else '(any confidence)'}; on the grids the "
        f"model puts {recognition:.2f} of its softmax on "
        f"the four classes present (chance {4 / model.num_classes:.2f})."
    )


def print_header(
    args: argparse.Namespace, name: str, model: nn.Module, probe: Probe, alpha: float
) -> None:
    """What the model does on the probe, under DAVE's warps and, for the shortcut, without it."""
    print(f"- probe: {probe.note}.")
    clean, warped_accuracy, warped = warp_robustness(model, probe)
    print(
        f"- DAVE: N = {args.num_samples}, noise_alpha = {alpha:.2f} ({args.noise_alpha}). On the "
        f"probe under Step II's warps: accuracy {warped_accuracy:.2f} (clean 1.00), mean target "
        f"softmax {warped:.2f} (clean {clean:.2f})."
    )
    print(f"- {test_accuracy(model, name, args.quick)}.")


def evaluate_model(args: argparse.Namespace, name: str) -> None:
    start = time.perf_counter()
    module, val = trained_classifier(name, quick=args.quick)
    model = module.model
    print(f"\n## model `{name}` (loaded or trained in {time.perf_counter() - start:.0f} s)\n")
    probe = select_probe(model, val, args.images, pool=len(val))
    grids, grid_threshold = build_grids(model, val, len(val), args.grids)
    alpha = choose_noise_alpha(args, model, probe)
    print_header(args, name, model, probe, alpha)
    print(describe_grids(model, grids, grid_threshold) + "\n")
    deletion = DeletionSetup(args.steps, 0.9, args.blur_kernel, args.blur_sigma)
    patch = model.patch_embed.patch_size[0]
    results = {}
    for row in rows_for(args, alpha):
        attributor = get_attributor(row.method, model, **row.options)
        results[row.label] = score_method(model, attributor, probe, grids, deletion, patch)
    print_table(results)
    print_references(args, probe, *val.image_size, patch, time.perf_counter() - start)


def print_references(
    args: argparse.Namespace, probe: Probe, height: int, width: int, patch: int, seconds: float
) -> None:
    """Chance levels, the deletion setting and how often Step II keeps the boxes in the frame."""
    has_marks = any(len(mark) for mark in probe.marks)
    visibility = frame_visibility(height, width, num_samples=256)
    uniform = f"a uniform map's EnergyPG {100 * box_area_share(probe.boxes, height, width):.1f} %"
    if has_marks:
        uniform += f" and mark share {100 * box_area_share(probe.marks, height, width):.1f} %"
    kept = f"{100 * mean_visibility(visibility, probe.boxes):.0f} % on the objects"
    if has_marks:
        kept += f", {100 * mean_visibility(visibility, probe.marks):.0f} % on the marks"
    kept += f", {100 * float(visibility[0, 0]):.0f} % at a corner"
    chance = patch_artifact_chance_level(height, width, patch)
    print(
        f"\nReferences: GridPG chance 25 %; {uniform}; patch artifact of white noise "
        f"{chance:.3f}. Deletion: {args.steps} steps up to 90 %, blur {args.blur_kernel}x"
        f"{args.blur_kernel} sigma {args.blur_sigma:g}. DAVE's "
        f"Step II keeps a pixel inside the frame in {kept} of its draws. "
        f"Model evaluated in {seconds:.0f} s."
    )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    for logger in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(logger).setLevel(logging.ERROR)  # quiet the first run's training
    print(
        f"# Attribution methods compared on trained ViTs ({'quick' if args.quick else 'full'})\n\n"
        f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} "
        f"thread(s); {args.images} probe images, N = {args.num_samples} (DAVE, SmoothGrad), "
        f"IG {args.ig_steps} steps, {args.grids} grids"
    )
    for name in args.models:
        evaluate_model(args, name)


if __name__ == "__main__":
    main()
