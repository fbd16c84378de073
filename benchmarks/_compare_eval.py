"""Scoring helpers of ``compare_methods.py``: the probe, the grids, one method's metrics, summaries.

Every metric returns one value per image (per explained grid cell for GridPG), so the tables can
show the mean and its standard error over images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dave_lightning.attributor import Attributor
from dave_lightning.data import ShapeSample, SyntheticShapes
from dave_lightning.data.grids import GridBatch, make_grids
from dave_lightning.metrics.functional import (
    deletion_auc,
    energy_pointing_game,
    grid_pointing_game,
    patch_artifact_score,
    pixel_deletion,
)
from dave_lightning.transforms import LocalTransformDistribution, slot_seed, warp

MIN_CONFIDENCE = 0.9
"""The reference pixel-deletion script keeps images correct with softmax >= 0.9."""
GRID_THRESHOLDS = (0.95, 0.9, 0.8, 0.5, 0.0)
"""The paper's group builds GridPG grids from images correct with softmax >= 0.95; lower levels
are the stated fall-backs when too few images pass (0: correct is enough)."""


@dataclass(frozen=True)
class Probe:
    """The images every method explains, with what the metrics need about them."""

    images: Tensor
    labels: Tensor
    boxes: list[Tensor]
    marks: list[Tensor]
    note: str


@dataclass(frozen=True)
class DeletionSetup:
    """Pixel-deletion settings shared by both orders."""

    steps: int
    max_fraction: float
    blur_kernel_size: int
    blur_sigma: float
    batch_size: int = 128


@dataclass
class MethodScores:
    """Per-image scores of one method and its attribution time per image (wall and CPU)."""

    seconds_per_image: float
    cpu_seconds_per_image: float
    values: dict[str, Tensor] = field(default_factory=dict)


def _validation_batch(val: SyntheticShapes, pool: int) -> tuple[list[ShapeSample], Tensor, Tensor]:
    samples = [val.sample(i) for i in range(min(pool, len(val)))]
    return (
        samples,
        torch.stack([s.image for s in samples]),
        torch.tensor([s.label for s in samples]),
    )


@torch.no_grad()
def _true_class_probability(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    logits = torch.cat([model(chunk) for chunk in images.split(128)])
    correct = logits.argmax(dim=1) == labels
    probability = logits.softmax(dim=1).gather(1, labels[:, None])[:, 0]
    return torch.where(correct, probability, torch.zeros_like(probability))


def select_probe(model: nn.Module, val: SyntheticShapes, count: int, pool: int) -> Probe:
    """``count`` of the first ``pool`` validation images, chosen as the paper's filter would.

    The first images the model gets right with p >= 0.9; when too few are that confident (the
    models train with label smoothing 0.1, which caps p near 0.92), the most confident of the
    other correctly classified images fill the probe, and the note says so.
    """
    samples, images, labels = _validation_batch(val, pool)
    probability = _true_class_probability(model, images, labels)
    confident = (probability >= MIN_CONFIDENCE).nonzero()[:, 0][:count]
    note = (
        f"{int((probability >= MIN_CONFIDENCE).sum())} of {len(samples)} validation images are "
        f"correct with p >= {MIN_CONFIDENCE}"
    )
    chosen = confident
    if confident.numel() < count:
        others = probability.masked_fill(probability >= MIN_CONFIDENCE, 0.0)
        ranked = others.argsort(descending=True)[: count - confident.numel()]
        ranked = ranked[others[ranked] > 0]
        chosen = torch.cat([confident, ranked]).sort().values
        lowest = float(probability[chosen].min()) if chosen.numel() else math.nan
        note += (
            f"; the probe adds the {ranked.numel()} most confident correct others "
            f"(p >= {lowest:.2f})"
        )
    index = chosen.tolist()
    return Probe(
        images=images[chosen],
        labels=labels[chosen],
        boxes=[samples[i].box for i in index],
        marks=[samples[i].cue_box for i in index],
        note=note,
    )


def build_grids(
    model: nn.Module, val: SyntheticShapes, pool: int, num_grids: int
) -> tuple[GridBatch, float]:
    """2x2 full-resolution grids of correctly classified images, every cell explained.

    The group's filter (p >= 0.95) first; when it leaves fewer than ``num_grids`` grids, the
    threshold is lowered step by step (:data:`GRID_THRESHOLDS`; 0: correct is enough). Returns
    the grids and the threshold used.
    """
    _, images, labels = _validation_batch(val, pool)
    grids = None
    for threshold in GRID_THRESHOLDS:
        grids = make_grids(
            images,
            labels,
            grid_size=2,
            num_grids=num_grids,
            full_resolution=True,
            model=model,
            min_confidence=threshold,
            seed=0,
            on_empty="ignore",  # the report prints grids.reason
        )
        if len(grids) == num_grids:
            break
    assert grids is not None
    return grids, threshold


@torch.no_grad()
def grid_recognition(model: nn.Module, grids: GridBatch) -> float:
    """Mean softmax mass the model puts on the grid's four classes (chance: 4 / num_classes)."""
    if len(grids) == 0:
        return math.nan
    probabilities = model(grids.images).softmax(dim=1)
    return float(probabilities.gather(1, grids.cell_labels).sum(dim=1).mean())


def timed_attribution(
    attributor: Attributor, images: Tensor, target: Tensor
) -> tuple[Tensor, float, float]:
    """The maps, and the wall-clock and process CPU seconds per image of producing them.

    CPU time is what a busy machine does not inflate: with one thread it estimates the wall time
    on a quiet machine. One image is attributed first, untimed, so one-time set-up costs (the
    first backward pass, allocations) do not count against whichever method runs first.
    """
    attributor.attribute(images[:1], target[:1])
    wall, cpu = time.perf_counter(), time.process_time()
    maps = attributor.attribute(images, target)
    count = images.shape[0]
    return maps, (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def deletion_aucs(
    model: nn.Module, probe: Probe, maps: Tensor, order: str, setup: DeletionSetup
) -> Tensor:
    """Per-image AUC of the target's softmax probability as pixels are removed in ``order``."""
    fractions, curves = pixel_deletion(
        model,
        probe.images,
        maps,
        probe.labels,
        steps=setup.steps,
        max_fraction=setup.max_fraction,
        order=order,  # type: ignore[arg-type]
        replacement="blur",
        score="softmax",
        batch_size=setup.batch_size,
        blur_kernel_size=setup.blur_kernel_size,
        blur_sigma=setup.blur_sigma,
    )
    return deletion_auc(curves, fractions)


def score_method(
    model: nn.Module,
    attributor: Attributor,
    probe: Probe,
    grids: GridBatch,
    deletion: DeletionSetup,
    patch_size: int,
) -> MethodScores:
    """Every metric of one method on the probe images and the grids."""
    maps, wall, cpu = timed_attribution(attributor, probe.images, probe.labels)
    scores = MethodScores(seconds_per_image=wall, cpu_seconds_per_image=cpu)
    scores.values["energy"] = energy_pointing_game(maps, probe.boxes)
    if any(len(mark) for mark in probe.marks):
        scores.values["mark"] = energy_pointing_game(maps, probe.marks)
    scores.values["most_first"] = deletion_aucs(model, probe, maps, "most_relevant_first", deletion)
    scores.values["least_first"] = deletion_aucs(
        model, probe, maps, "least_relevant_first", deletion
    )
    scores.values["artifact"] = patch_artifact_score(maps, patch_size)
    if len(grids):
        grid_maps = attributor.attribute(grids.images, grids.targets)
        scores.values["grid"] = grid_pointing_game(
            grid_maps.flatten(0, 1), grids.explain_cells.flatten(), grids.grid_size
        )
    return scores


def mean_and_error(values: Tensor) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count of the finite values."""
    finite = values[torch.isfinite(values)].double()
    count = finite.numel()
    if count == 0:
        return math.nan, math.nan, 0
    error = float(finite.std() / math.sqrt(count)) if count > 1 else math.nan
    return float(finite.mean()), error, count


def box_area_share(boxes: list[Tensor], height: int, width: int) -> float:
    """Mean share of the image inside each image's (first) box: a uniform map's EnergyPG."""
    areas = [
        float((box[0, 2:] - box[0, :2]).prod()) / (height * width) for box in boxes if len(box)
    ]
    return sum(areas) / len(areas) if areas else math.nan


@torch.no_grad()
def warp_robustness(model: nn.Module, probe: Probe, draws: int = 16) -> tuple[float, float, float]:
    """Mean target softmax on the probe, then accuracy and target softmax under Step II's warps.

    Step II averages the model's evidence over these warps; it explains the model it should only
    when the model's decision survives them.
    """
    clean = float(model(probe.images).softmax(dim=1).gather(1, probe.labels[:, None]).mean())
    distribution = LocalTransformDistribution()
    correct, probability = 0.0, 0.0
    for k in range(draws):
        params = distribution.sample([slot_seed(1, i, k) for i in range(len(probe.labels))])
        p = model(warp(probe.images, params)).softmax(dim=1)
        correct += float((p.argmax(dim=1) == probe.labels).float().mean())
        probability += float(p.gather(1, probe.labels[:, None]).mean())
    return clean, correct / draws, probability / draws


def frame_visibility(height: int, width: int, num_samples: int, seed: int = 0) -> Tensor:
    """``(H, W)``: share of DAVE's Step II draws that keep each pixel in the frame.

    A pixel counts as kept in a draw when at least half of its content lands inside the warped
    image (the warp's adjoint applied to an all-ones image, as the gradient sees it).
    """
    distribution = LocalTransformDistribution()
    seeds = [slot_seed(seed, 0, k) for k in range(num_samples)]
    ones = torch.ones(num_samples, 1, height, width, requires_grad=True)
    (weight,) = torch.autograd.grad(warp(ones, distribution.sample(seeds)).sum(), ones)
    return (weight[:, 0] >= 0.5).float().mean(dim=0)


def mean_visibility(visibility: Tensor, boxes: list[Tensor]) -> float:
    """Mean of ``visibility`` over the pixels of each image's first box, averaged over images."""
    means = []
    for box in boxes:
        if len(box):
            x1, y1, x2, y2 = (round(float(v)) for v in box[0])
            means.append(float(visibility[y1:y2, x1:x2].mean()))
    return sum(means) / len(means) if means else math.nan
