"""The DAVE paper's comparison, reproduced on small ViTs trained here (issues 8 and 17).

Trains (or loads from ``benchmarks/.cache``) the demo's CPU-sized ViT (64x64 images, 8x8 patches,
width 96, depth 4) on the embedded shapes data the way ViTs are trained: random resized crops
(scale 0.5-1), horizontal flips and small rotations/shifts (±15°, ±10 %), as the demo does
(``--no-augment`` trains on the rendered images as they are). Each setting is trained with
several seeds (data, initial weights and augmentation draws), normally and with the
class-coloured spurious mark, and every registered attribution method is scored on each model
with the protocols of the paper's group:

* **GridPG** (higher is better, chance 25 %): 2x2 full-resolution grids (128x128, the model has
  ``dynamic_img_size``) of four distinct classes from validation images the model classifies
  correctly with softmax >= 0.95 (the group's filter; lowered step by step to 0.9, 0.8, 0.5,
  then "correct", when too few images pass it: the models train with label smoothing 0.1, which
  caps the softmax near 0.92, and the output states the level used); every cell is explained and
  is one item; positive attribution only. The output also says how much softmax the model puts
  on a grid's four classes: near chance, the model does not recognise the cells.
* **EnergyPG** (higher is better): positive attribution inside the object's box.
* **mark share** (spurious models only): EnergyPG with the mark's box; the shortcut's fingerprint.
* **pixel deletion**, as the reference script does it: images correct with softmax >= 0.9 (the
  most confident correct others fill the probe when too few pass; the output says so), pixels
  removed up to 90 % in ``--steps`` steps, removed pixels take a blurred copy of the image (31x31,
  sigma 7), the score is the target's softmax, AUC by the trapezoid rule normalised by the
  removed range. Both orders: least relevant first (the paper's; higher is better) and most
  relevant first (lower is better). The ``random`` method is the random-order reference.
* **patch artifact** (lower is better): the share of a map's non-DC spectral energy on the 8x8
  patch lattice; the white-noise chance level is printed below the table.
* **ms / image**: attribution of the probe images, wall clock and, in brackets, process CPU time
  (which a busy machine does not inflate).

Tables show the mean ± standard error over the training seeds of each seed's mean over images
(grid cells for GridPG). DAVE uses the paper's Steps I-III (flip, ±20°, ±10 %, scale 0.9-1.1,
robust mean) with ``N`` samples and a noise level calibrated per model on its probe images
(``noise_alpha="auto"``). Ablations: Step I alone (``effective_input_x_gradient``), DAVE without
the warps (Steps I+III), without the noise (Steps I+II), and with half the warp range. Each
model's robustness to DAVE's warps (accuracy and target softmax on the probe under Step II's
warps) is reported: DAVE averages the model's evidence over these warps, so it explains the model
only as far as the model's decision survives them. A goal check at the end says where DAVE ranks.

Run (from the repository root, with the package importable, e.g. ``PYTHONPATH=$PWD``):
    python benchmarks/compare_methods.py --quick   # 3 seeds x 2 settings, weak models: smoke test
    python benchmarks/compare_methods.py           # the README's tables (1 thread)
    python benchmarks/compare_methods.py --seeds 1 # one seed; run 0, 1, 2 in parallel, then all
    python benchmarks/compare_methods.py --quick --methods dave random --no-ablations --seeds 0

The first run also trains the models, then caches them in ``benchmarks/.cache`` (keyed by every
setting and the thread count), and each model's scores (keyed by every option): seeds can run in
parallel processes (``--seeds 0``, ``--seeds 1``, ...), and a last run with all seeds prints the
tables at once. Tables go to stdout as markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import timm
import torch
from _compare_eval import (
    GRID_THRESHOLDS,
    MIN_CONFIDENCE,
    DeletionSetup,
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
from _trained import CACHE, SETTINGS, config_for, trained_classifier
from torch import nn

from dave_lightning import calibrate_noise_alpha
from dave_lightning.data import SyntheticShapes
from dave_lightning.data.grids import GridBatch
from dave_lightning.metrics.functional import patch_artifact_chance_level
from dave_lightning.registry import available_attributors, get_attributor

NO_WARP = {"flip_prob": 0.0, "rotation": 0.0, "translation": 0.0, "scale": (1.0, 1.0)}
HALF_WARP = {"rotation": 10.0, "translation": 0.05, "scale": (0.95, 1.05)}
QUICK = {"images": 8, "num_samples": 8, "ig_steps": 8, "steps": 16, "grids": 2}
FULL = {"images": 16, "num_samples": 16, "ig_steps": 16, "steps": 32, "grids": 4}
SEEDS = (0, 1, 2)
COLUMNS = (  # key, header, scale, digits
    ("grid", "GridPG % ↑", 100, 1),
    ("energy", "EnergyPG % ↑", 100, 1),
    ("mark", "mark share %", 100, 1),
    ("least_first", "deletion LeRF AUC ↑", 1, 3),
    ("most_first", "deletion MoRF AUC ↓", 1, 3),
    ("artifact", "patch artifact ↓", 1, 3),
)
TEST_NAMES = {"test_clean": "test acc without mark", "test_marked": "with mark as in training"}
HIGHER_IS_BETTER = {"grid": True, "energy": True, "artifact": False}


@dataclass(frozen=True)
class Row:
    """One line of a table: a registered method and the options it is built with."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SeedResult:
    """One trained model's per-method means over images, run times and model facts."""

    means: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_ms: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    facts: dict[str, float] = field(default_factory=dict)
    line: str = ""


def result_path(args: argparse.Namespace, name: str, seed: int) -> Path:
    """Where one model's scores are kept: keyed by the model and every evaluation option."""
    options = {k: v for k, v in sorted(vars(args).items()) if k not in ("seeds", "models")}
    options.update(name=name, seed=seed, threads=torch.get_num_threads())
    digest = hashlib.sha1(json.dumps(options, default=str).encode()).hexdigest()[:12]
    return CACHE / f"scores-{name}-{seed}-{digest}.json"


def cached_seed(args: argparse.Namespace, name: str, seed: int) -> SeedResult:
    """One model's scores: read from ``benchmarks/.cache`` when this evaluation ran before.

    Runs with different ``--seeds`` share these files, so seeds can be evaluated in parallel
    processes and a last run with every seed only prints the tables.
    """
    path = result_path(args, name, seed)
    if path.exists():
        result = SeedResult(**json.loads(path.read_text()))
        print(result.line + " (scores read from the cache)", flush=True)
        return result
    result = evaluate_seed(args, name, seed)
    result.facts.update(area_facts(name))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(result)))
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller models, probe and N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="(0 1 2)")
    parser.add_argument("--images", type=int, help="probe images (quick 8, default 16)")
    parser.add_argument("--num-samples", type=int, help="DAVE's N and SmoothGrad's (8 / 16)")
    parser.add_argument("--ig-steps", type=int, help="Integrated Gradients steps (8 / 16)")
    parser.add_argument("--steps", type=int, help="pixel-deletion steps (16 / 32)")
    parser.add_argument("--grids", type=int, help="2x2 grids, every cell explained (2 / 4)")
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
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the models with the demo's augmentation (default on)",
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
        yield Row("dave, half warp range", "dave", {**cost["dave"], **HALF_WARP})


def choose_noise_alpha(args: argparse.Namespace, model: nn.Module, probe: Probe) -> float:
    if args.noise_alpha != "auto":
        return float(args.noise_alpha)
    alpha, _ = calibrate_noise_alpha(model, probe.images, probe.labels)
    return alpha


def over_seeds(values: list[float]) -> tuple[float, float]:
    """Mean and standard error over seeds (NaN error for one seed)."""
    mean, error, _ = mean_and_error(torch.tensor(values, dtype=torch.float64))
    return mean, error


def cell(values: list[float] | None, scale: float, digits: int) -> str:
    if not values:
        return "–"
    mean, error = over_seeds(values)
    if math.isnan(mean):
        return "nan"
    spread = "" if math.isnan(error) else f" ± {error * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}{spread}"


def collect(results: list[SeedResult], label: str, key: str) -> list[float]:
    return [r.means[label][key] for r in results if key in r.means.get(label, {})]


def print_table(results: list[SeedResult]) -> None:
    labels = list(results[0].means)
    present = [c for c in COLUMNS if any(collect(results, label, c[0]) for label in labels)]
    print("| method | " + " | ".join(c[1] for c in present) + " | ms / image wall (CPU) |")
    print("|---" * (len(present) + 2) + "|")
    for label in labels:
        cells = [cell(collect(results, label, key), s, d) for key, _, s, d in present]
        wall = sum(r.wall_ms[label] for r in results) / len(results)
        cpu = sum(r.cpu_ms[label] for r in results) / len(results)
        print(f"| {label} | " + " | ".join(cells) + f" | {wall:.1f} ({cpu:.1f}) |")


@torch.no_grad()
def accuracy(model: nn.Module, dataset: SyntheticShapes) -> float:
    samples = [dataset.sample(i) for i in range(len(dataset))]
    images = torch.stack([s.image for s in samples])
    labels = torch.tensor([s.label for s in samples])
    return float((model(images).argmax(dim=1) == labels).float().mean())


def test_accuracies(model: nn.Module, args: argparse.Namespace, name: str, seed: int) -> dict:
    """Test-split accuracy: clean, or for the shortcut model with the mark as in training/none."""
    config = config_for(name, args.quick, seed, args.augment)
    cues = ("correlated", "absent") if config.spurious else ("absent",)
    found = {}
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
        found["test_marked" if cue == "correlated" else "test_clean"] = accuracy(model, dataset)
    return found


def describe_grids(model: nn.Module, grids: GridBatch, threshold: float) -> tuple[str, float]:
    if not len(grids):
        return f"GridPG skipped: {grids.reason}", math.nan
    recognition = grid_recognition(model, grids)
    level = f"p >= {threshold}" if threshold else "any confidence"
    return (
        f"{len(grids)} grids from the {grids.num_eligible} images correct with {level}, "
        f"softmax on the 4 classes present {recognition:.2f} (chance {4 / model.num_classes:.2f})",
        recognition,
    )


def evaluate_seed(args: argparse.Namespace, name: str, seed: int) -> SeedResult:
    """Train or load one model and score every row on it; prints one line about the model."""
    start = time.perf_counter()
    module, val = trained_classifier(name, quick=args.quick, seed=seed, augment=args.augment)
    trained = time.perf_counter() - start
    model = module.model
    probe = select_probe(model, val, args.images, pool=len(val))
    grids, grid_threshold = build_grids(model, val, len(val), args.grids)
    alpha = choose_noise_alpha(args, model, probe)
    clean, warped_accuracy, warped = warp_robustness(model, probe)
    result = SeedResult()
    result.facts = {
        "val_acc": accuracy(model, val),
        **test_accuracies(model, args, name, seed),
        "warp_acc": warped_accuracy,
        "warp_softmax": warped,
        "clean_softmax": clean,
        "noise_alpha": alpha,
        "grid_threshold": grid_threshold,
    }
    grid_note, result.facts["grid_recognition"] = describe_grids(model, grids, grid_threshold)
    deletion = DeletionSetup(args.steps, 0.9, args.blur_kernel, args.blur_sigma)
    patch = model.patch_embed.patch_size[0]
    for row in rows_for(args, alpha):
        attributor = get_attributor(row.method, model, **row.options)
        scores = score_method(model, attributor, probe, grids, deletion, patch)
        result.means[row.label] = {k: mean_and_error(v)[0] for k, v in scores.values.items()}
        result.wall_ms[row.label] = scores.seconds_per_image * 1e3
        result.cpu_ms[row.label] = scores.cpu_seconds_per_image * 1e3
    facts = result.facts
    tests = ", ".join(f"{TEST_NAMES[k]} {v:.2f}" for k, v in facts.items() if k.startswith("test_"))
    result.line = (
        f"- {name}, seed {seed}: val acc {facts['val_acc']:.2f}, {tests}; probe: {probe.note}; "
        f"GridPG: {grid_note}; DAVE noise_alpha {alpha:.2f}; under Step II's warps: probe "
        f"accuracy {warped_accuracy:.2f} (clean 1.00), target softmax {warped:.2f} (clean "
        f"{clean:.2f}); trained/loaded in {trained:.0f} s, evaluated in "
        f"{time.perf_counter() - start - trained:.0f} s."
    )
    print(result.line, flush=True)
    return result


def print_models(results: list[SeedResult]) -> None:
    """The models' accuracy and warp robustness, mean ± standard error over seeds."""
    names = {
        "val_acc": "validation accuracy",
        "test_clean": "test accuracy, no mark",
        "test_marked": "test accuracy, mark as in training",
        "warp_acc": "probe accuracy under DAVE's warps (clean 1.00)",
        "warp_softmax": "probe target softmax under DAVE's warps",
        "clean_softmax": "probe target softmax, clean",
        "noise_alpha": "DAVE's calibrated noise_alpha",
        "grid_recognition": "softmax on a grid's 4 classes",
    }
    parts = []
    for key, label in names.items():
        values = [r.facts[key] for r in results if not math.isnan(r.facts.get(key, math.nan))]
        if values:
            mean, error = over_seeds(values)
            parts.append(f"{label} {mean:.2f} ± {error:.2f}")
    print("- models (mean ± SE over seeds): " + "; ".join(parts) + ".")


def print_references(args: argparse.Namespace, name: str) -> None:
    """Chance levels, the deletion setting and how often Step II keeps the boxes in the frame."""
    val = SyntheticShapes(
        "val",
        length=64,
        image_size=64,
        spurious=SETTINGS[name].get("spurious", False),  # type: ignore[arg-type]
        eval_cue="correlated",
        cue_placement="inset",
    )
    samples = [val.sample(i) for i in range(len(val))]
    boxes, marks = [s.box for s in samples], [s.cue_box for s in samples]
    height, width = val.image_size
    visibility = frame_visibility(height, width, num_samples=256)
    uniform = f"a uniform map's EnergyPG {100 * box_area_share(boxes, height, width):.1f} %"
    kept = f"{100 * mean_visibility(visibility, boxes):.0f} % on the objects"
    if any(len(m) for m in marks):
        uniform += f" and mark share {100 * box_area_share(marks, height, width):.1f} %"
        kept += f", {100 * mean_visibility(visibility, marks):.0f} % on the marks"
    chance = patch_artifact_chance_level(height, width, 8)
    print(
        f"\nReferences: GridPG chance 25 %; {uniform}; patch artifact of white noise "
        f"{chance:.3f}. Deletion: {args.steps} steps up to 90 %, blur {args.blur_kernel}x"
        f"{args.blur_kernel} sigma {args.blur_sigma:g}. DAVE's Step II keeps a pixel inside the "
        f"frame in {kept} of its draws."
    )


def aggregate(results: list[SeedResult], label: str, key: str) -> tuple[float, float]:
    return over_seeds(collect(results, label, key))


def rank_line(results: list[SeedResult], key: str, header: str, methods: list[str]) -> str:
    """Where DAVE ranks among the registered methods on one metric (ties: within one SE)."""
    higher = HIGHER_IS_BETTER[key]
    scored = {m: aggregate(results, m, key) for m in methods if collect(results, m, key)}
    if "dave" not in scored:
        return f"- {header}: DAVE not scored."
    ordered = sorted(scored, key=lambda m: scored[m][0], reverse=higher)
    best_other = next(m for m in ordered if m != "dave")
    (dave, dave_error), (other, other_error) = scored["dave"], scored[best_other]
    gap = dave - other if higher else other - dave
    if gap >= 0:
        verdict = "DAVE first"
    elif -gap <= max(dave_error, other_error):
        verdict = "tied with the best (within one standard error)"
    else:
        verdict = f"DAVE ranks {ordered.index('dave') + 1} of {len(ordered)}"
    return (
        f"- {header}: {verdict}: DAVE {dave:.3f} ± {dave_error:.3f}, best other {best_other} "
        f"{other:.3f} ± {other_error:.3f}."
    )


def deletion_line(results: list[SeedResult]) -> str:
    parts = []
    for key, name, higher in (("least_first", "LeRF", True), ("most_first", "MoRF", False)):
        dave, dave_error = aggregate(results, "dave", key)
        rand, rand_error = aggregate(results, "random", key)
        beats = dave > rand if higher else dave < rand
        wins = sum(
            (d > r) if higher else (d < r)
            for d, r in zip(
                collect(results, "dave", key), collect(results, "random", key), strict=True
            )
        )
        parts.append(
            f"{name} DAVE {dave:.3f} ± {dave_error:.3f} vs random order {rand:.3f} ± "
            f"{rand_error:.3f} ({'beats' if beats else 'does not beat'} it; better on {wins} of "
            f"{len(results)} seeds)"
        )
    return "- pixel deletion: " + "; ".join(parts) + "."


def goal_check(args: argparse.Namespace, per_setting: dict[str, list[SeedResult]]) -> None:
    print("\n## Goal check (issue 17)\n")
    methods = list(args.methods)
    normal = per_setting.get("normal")
    if normal and "dave" in methods:
        print(f"Normal models ({len(normal)} seeds):")
        print(rank_line(normal, "grid", "GridPG", methods))
        print(rank_line(normal, "energy", "EnergyPG", methods))
        gradient_methods = [m for m in methods if m != "random"]
        print(rank_line(normal, "artifact", "patch artifact (gradient methods)", gradient_methods))
        if "random" in methods:
            print(deletion_line(normal))
    spurious = per_setting.get("spurious")
    if spurious and "dave" in methods:
        print(f"\nSpurious models ({len(spurious)} seeds):")
        if normal:
            before, before_error = aggregate(normal, "dave", "energy")
            after, after_error = aggregate(spurious, "dave", "energy")
            print(
                f"- DAVE's EnergyPG: normal {100 * before:.1f} ± {100 * before_error:.1f} %, "
                f"spurious {100 * after:.1f} ± {100 * after_error:.1f} % (drop "
                f"{100 * (before - after):.1f} points)."
            )
        shown = sum(shortcut_shown(r) for r in spurious)
        print(
            f"- shortcut verdict (as the demo's: validation accuracy >= 0.8, clean test accuracy "
            f"below it by > 0.3, DAVE's positive attribution denser per pixel on the mark than "
            f"on the object): shown for {shown} of {len(spurious)} seeds."
        )


def shortcut_shown(result: SeedResult) -> bool:
    facts, dave = result.facts, result.means.get("dave", {})
    if "mark" not in dave or "test_clean" not in facts:
        return False
    held = facts["val_acc"] >= 0.8 and facts["test_clean"] < facts["val_acc"] - 0.3
    return held and dave["mark"] / facts["mark_area"] > dave["energy"] / facts["object_area"]


def setting_header(args: argparse.Namespace, name: str) -> str:
    config = config_for(name, args.quick, args.seeds[0], args.augment)
    return (
        f"## model `{name}`: {config.epochs} epochs on {config.train_size} images, "
        f"{'augmented' if config.augment else 'not augmented'}, seeds {args.seeds}"
    )


def print_setting(
    args: argparse.Namespace, name: str, results: list[SeedResult], file: TextIO
) -> None:
    with redirect_stdout(file):
        print(f"\n{setting_header(args, name)}\n")
        print_models(results)
        print()
        print_table(results)
        print_references(args, name)


def evaluate_all(args: argparse.Namespace) -> dict[str, list[SeedResult]]:
    """Seed by seed, every setting; the tables so far go to stderr after each round."""
    per_setting: dict[str, list[SeedResult]] = {name: [] for name in args.models}
    for round_index, seed in enumerate(args.seeds):
        for name in args.models:
            per_setting[name].append(cached_seed(args, name, seed))
        if round_index + 1 < len(args.seeds):
            print(f"\n(tables after {round_index + 1} seed(s), on stderr)", file=sys.stderr)
            for name, results in per_setting.items():
                print_setting(args, name, results, sys.stderr)
            sys.stderr.flush()
    return per_setting


def area_facts(name: str) -> dict[str, float]:
    """Mean share of the image under the object's and the mark's boxes (the verdict's units)."""
    val = SyntheticShapes(
        "val",
        length=64,
        image_size=64,
        spurious=bool(SETTINGS[name].get("spurious", False)),
        eval_cue="correlated",
        cue_placement="inset",
    )
    samples = [val.sample(i) for i in range(len(val))]
    return {
        "object_area": box_area_share([s.box for s in samples], 64, 64),
        "mark_area": box_area_share([s.cue_box for s in samples], 64, 64),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    for logger in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(logger).setLevel(logging.ERROR)  # quiet the first run's training
    thresholds = ", ".join(f"{t:g}" for t in GRID_THRESHOLDS[1:])
    print(
        f"# Attribution methods compared on trained ViTs ({'quick' if args.quick else 'full'})\n\n"
        f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} "
        f"thread(s); seeds {args.seeds}; per model {args.images} probe images, N = "
        f"{args.num_samples} (DAVE, SmoothGrad), IG {args.ig_steps} steps, {args.grids} 2x2 "
        f"grids (every cell explained).\n\nProtocols: GridPG on grids of 4 distinct classes from "
        f"images correct with softmax >= {GRID_THRESHOLDS[0]} (fall-backs {thresholds}; 0 = "
        f"correct), positive attribution only; EnergyPG on the object's box; pixel deletion on "
        f"images correct with softmax >= {MIN_CONFIDENCE}, least and most relevant first, up to "
        f"90 %, blurred replacement, target softmax, trapezoid AUC over the removed range; "
        f"patch-artifact score; attribution time. Cells: mean ± standard error over seeds."
    )
    print("\nPer model (setting, seed):", flush=True)
    per_setting = evaluate_all(args)
    for name, results in per_setting.items():
        print_setting(args, name, results, sys.stdout)
    goal_check(args, per_setting)


if __name__ == "__main__":
    main()
