"""The evaluation protocols of benchmarks/compare_methods.py against explicit references.

GridPG's confidence filter (the paper's group: softmax >= 0.95, then the stated fall-backs), the
pixel-deletion probe (softmax >= 0.9) and both deletion orders, as the reference script does them.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _compare_eval import (  # noqa: E402
    GRID_THRESHOLDS,
    DeletionSetup,
    Probe,
    build_grids,
    deletion_aucs,
    select_probe,
)

NUM_CLASSES = 4


class PixelLogits(nn.Module):
    """Logits are the first four pixels of channel 0 (top row), so a test writes them."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 0, :NUM_CLASSES]


class FakeValidation:
    """A stand-in for the validation split: image ``i`` has logit ``margins[i]`` on its label."""

    def __init__(self, margins: list[float], labels: list[int]) -> None:
        self.samples = []
        for margin, label in zip(margins, labels, strict=True):
            image = torch.zeros(3, 8, 8)
            image[0, 0, label] = margin
            box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
            self.samples.append(SimpleNamespace(image=image, label=label, box=box, cue_box=box[:0]))

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int) -> SimpleNamespace:
        return self.samples[index]


def softmax_of_margin(margin: float) -> float:
    """The label's softmax when its logit is ``margin`` and the three others are 0."""
    return math.exp(margin) / (math.exp(margin) + NUM_CLASSES - 1)


def test_the_margins_used_below_straddle_the_thresholds() -> None:
    assert softmax_of_margin(4.5) >= 0.95
    assert 0.9 <= softmax_of_margin(3.5) < 0.95
    assert 0.8 <= softmax_of_margin(2.5) < 0.9
    assert softmax_of_margin(1.0) < 0.5


def test_the_group_threshold_is_tried_first() -> None:
    assert GRID_THRESHOLDS[0] == 0.95
    assert list(GRID_THRESHOLDS) == sorted(GRID_THRESHOLDS, reverse=True)
    assert GRID_THRESHOLDS[-1] == 0.0


@pytest.mark.parametrize(
    ("second_margin", "expected"), [(4.5, 0.95), (3.5, 0.9), (2.5, 0.8), (1.0, 0.0)]
)
def test_grids_use_the_highest_threshold_that_yields_enough_grids(
    second_margin: float, expected: float
) -> None:
    # Two images per class: the first of each at p >= 0.95, the second at second_margin.
    labels = [0, 1, 2, 3, 0, 1, 2, 3]
    val = FakeValidation([4.5] * 4 + [second_margin] * 4, labels)
    grids, threshold = build_grids(PixelLogits(), val, pool=8, num_grids=2)
    assert threshold == expected
    assert len(grids) == 2
    assert sorted(grids.source_indices.flatten().tolist()) == list(range(8))


def test_grids_never_use_misclassified_images() -> None:
    val = FakeValidation([4.5] * 4 + [-1.0] * 4, [0, 1, 2, 3, 0, 1, 2, 3])
    grids, threshold = build_grids(PixelLogits(), val, pool=8, num_grids=2)
    assert threshold == 0.0
    assert len(grids) == 1
    assert sorted(grids.source_indices.flatten().tolist()) == [0, 1, 2, 3]


def test_the_deletion_probe_keeps_images_at_softmax_0_9_first() -> None:
    margins = [3.5, 1.0, 4.5, -1.0, 2.5, 3.6]
    val = FakeValidation(margins, [0, 1, 2, 3, 0, 1])
    probe = select_probe(PixelLogits(), val, count=3, pool=6)
    assert probe.labels.tolist() == [0, 2, 1]  # images 0, 2 and 5, in dataset order
    assert "3 of 6 validation images are correct with p >= 0.9" in probe.note
    filled = select_probe(PixelLogits(), val, count=4, pool=6)
    assert filled.labels.tolist() == [0, 2, 0, 1]  # image 4 (p = 0.80) is the most confident
    assert "adds the 1 most confident correct others" in filled.note


def reference_auc(
    model: nn.Module, image: torch.Tensor, relevance: torch.Tensor, target: int, least_first: bool
) -> float:
    """The reference script's loop, written out: steps of removal, blur fill, softmax, trapezoid."""
    steps, max_fraction, kernel, sigma = 4, 0.9, 5, 1.5
    pixels = relevance.numel()
    order = relevance.flatten().argsort(descending=not least_first)
    blurred = TF.gaussian_blur(image, [kernel, kernel], [sigma, sigma])  # mirrored borders
    scores = []
    for step in range(steps + 1):
        count = round(step / steps * max_fraction * pixels)
        removed = torch.zeros(pixels, dtype=torch.bool)
        removed[order[:count]] = True
        copy = torch.where(removed.view(1, *image.shape[-2:]), blurred, image)
        with torch.no_grad():
            scores.append(float(model(copy[None]).softmax(dim=1)[0, target]))
    width = max_fraction / steps
    area = sum((a + b) / 2 * width for a, b in itertools.pairwise(scores))
    return area / max_fraction


@pytest.mark.parametrize("order", ["least_relevant_first", "most_relevant_first"])
def test_deletion_aucs_follow_the_reference_script(order: str) -> None:
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 108, generator=generator))
    images = torch.randn(2, 3, 6, 6, generator=generator)
    maps = torch.randn(2, 6, 6, generator=generator)  # distinct values: no ties
    labels = torch.tensor([0, 2])
    probe = Probe(images, labels, boxes=[], marks=[], note="")
    setup = DeletionSetup(steps=4, max_fraction=0.9, blur_kernel_size=5, blur_sigma=1.5)
    aucs = deletion_aucs(model, probe, maps, order, setup)
    least_first = order == "least_relevant_first"
    expected = [
        reference_auc(model, images[i], maps[i], int(labels[i]), least_first) for i in range(2)
    ]
    assert aucs.tolist() == pytest.approx(expected, abs=1e-5)
    assert not math.isclose(
        float(aucs[0]), reference_auc(model, images[0], maps[0], 0, not least_first), abs_tol=1e-4
    )
