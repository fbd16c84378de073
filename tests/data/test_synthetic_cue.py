"""The spurious corner mark: where it goes, what colour it has, and which splits get it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dave_lightning.data import ShapeSample, SyntheticShapes, _render


def samples(dataset: SyntheticShapes) -> list[ShapeSample]:
    return [dataset.sample(index) for index in range(len(dataset))]


def agreement(dataset: SyntheticShapes) -> float:
    rendered = samples(dataset)
    return sum(s.cue_class == s.label for s in rendered) / len(rendered)


def gap_between(a: list[float], b: list[float]) -> float:
    """The Chebyshev gap between two end-exclusive boxes (<= 0 when they overlap)."""
    horizontal = max(b[0] - a[2], a[0] - b[2])
    vertical = max(b[1] - a[3], a[1] - b[3])
    return max(horizontal, vertical)


@pytest.mark.parametrize("size", [64, (40, 96), (16, 16), (16, 24)])
def test_mark_sits_in_a_corner_clear_of_the_object(size: int | tuple[int, int]) -> None:
    dataset = SyntheticShapes("train", length=120, image_size=size, spurious=True)
    height, width = dataset.image_size
    corners_used = set()
    for sample in samples(dataset):
        assert sample.cue_box.shape == (1, 4)
        cue = sample.cue_box[0].tolist()
        assert gap_between(cue, sample.box[0].tolist()) >= 1
        assert not sample.mask[int(cue[1]) : int(cue[3]), int(cue[0]) : int(cue[2])].any()
        assert 0 <= cue[0] < cue[2] <= width
        assert 0 <= cue[1] < cue[3] <= height
        near_left, near_top = cue[0] < width / 4, cue[1] < height / 4
        assert near_left or cue[2] > 3 * width / 4
        assert near_top or cue[3] > 3 * height / 4
        corners_used.add((near_left, near_top))
    assert len(corners_used) == 4


def test_mark_is_painted_in_its_class_colour() -> None:
    dataset = SyntheticShapes("train", length=30, spurious=True)
    for sample in samples(dataset):
        x1, y1, x2, y2 = (int(v) for v in sample.cue_box[0].tolist())
        assert sample.cue_class is not None
        colour = (dataset.cue_colours[sample.cue_class] * 255).round().to(torch.uint8)
        patch = sample.pixels[:, y1:y2, x1:x2]
        assert torch.equal(patch, colour.view(3, 1, 1).expand_as(patch))
    assert len({tuple(c.tolist()) for c in dataset.cue_colours}) == dataset.num_classes


@pytest.mark.slow
def test_training_mark_encodes_the_class() -> None:
    assert agreement(SyntheticShapes("train", length=60, spurious=True)) == 1.0
    small: dict[str, Any] = dict(length=600, image_size=16, spurious=True)
    partial = agreement(SyntheticShapes("train", spurious_prob=0.5, **small))
    assert partial == pytest.approx(0.5 + 0.5 / 6, abs=0.06)
    never = agreement(SyntheticShapes("train", spurious_prob=0.0, **small))
    assert never == pytest.approx(1 / 6, abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_splits_get_no_information_by_default(split: str) -> None:
    uncorrelated = SyntheticShapes(split, length=600, image_size=16, spurious=True)
    assert all(s.cue_box.shape == (1, 4) for s in samples(uncorrelated))
    assert agreement(uncorrelated) == pytest.approx(1 / 6, abs=0.05)
    absent = SyntheticShapes(split, length=20, spurious=True, eval_cue="absent")
    plain = SyntheticShapes(split, length=20)
    for with_flag, without in zip(samples(absent), samples(plain), strict=True):
        assert with_flag.cue_box.shape == (0, 4)
        assert with_flag.cue_class is None
        assert torch.equal(with_flag.image, without.image)
    correlated = SyntheticShapes(split, length=30, spurious=True, eval_cue="correlated")
    assert agreement(correlated) == 1.0


def test_spurious_changes_nothing_but_the_mark() -> None:
    marked = SyntheticShapes("train", length=20, spurious=True)
    plain = SyntheticShapes("train", length=20)
    for with_mark, without in zip(samples(marked), samples(plain), strict=True):
        assert without.cue_box.shape == (0, 4)
        assert without.cue_class is None
        x1, y1, x2, y2 = (int(v) for v in with_mark.cue_box[0].tolist())
        outside = torch.ones_like(with_mark.mask)
        outside[y1:y2, x1:x2] = False
        assert torch.equal(with_mark.pixels[:, outside], without.pixels[:, outside])
        assert not torch.equal(with_mark.pixels, without.pixels)
        assert with_mark.label == without.label
        assert torch.equal(with_mark.box, without.box)


def test_placement_rule_needs_a_one_pixel_gap() -> None:
    # At 64 px the mark is 6 px at a 2 px margin: corners [2, 8) and [56, 62) on each axis.
    canvas = _render.Canvas.of_size(64, 64)
    touching = torch.tensor([[8.0, 8.0, 56.0, 56.0]])
    with pytest.raises(RuntimeError, match="no corner is clear"):
        _render.cue_box(canvas, touching, torch.Generator())
    lefts = set()
    for seed in range(8):
        generator = torch.Generator().manual_seed(seed)
        box = _render.cue_box(canvas, torch.tensor([[8.0, 8.0, 56.0, 55.0]]), generator)
        assert box[0, 1].item() == 56  # only the bottom corners are one pixel clear
        lefts.add(box[0, 0].item())
    assert lefts == {2, 56}


def test_inset_marks_sit_at_free_quadrant_centres_and_fall_back_to_corners() -> None:
    canvas = _render.Canvas.of_size(64, 64)
    centre_spots = {(13, 13), (45, 13), (13, 45), (45, 45)}  # 6 px squares centred at 16 and 48
    seen = set()
    for seed in range(24):
        generator = torch.Generator().manual_seed(seed)
        box = _render.cue_box(canvas, torch.tensor([[0.0, 0.0, 30.0, 30.0]]), generator, "inset")
        spot = (int(box[0, 0]), int(box[0, 1]))
        assert spot in centre_spots - {(13, 13)}  # the top-left quadrant holds the object
        seen.add(spot)
    assert len(seen) == 3
    blocking = torch.tensor([[10.0, 10.0, 52.0, 52.0]])  # covers every quadrant centre
    corner = _render.cue_box(canvas, blocking, torch.Generator().manual_seed(0), "inset")
    assert (int(corner[0, 0]), int(corner[0, 1])) in {(2, 2), (56, 2), (2, 56), (56, 56)}


def test_inset_marks_stay_inside_the_rotation_safe_disc_and_clear_of_the_object() -> None:
    dataset = SyntheticShapes("train", length=60, spurious=True, cue_placement="inset")
    inside = 0
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        x1, y1, x2, y2 = sample.cue_box[0].tolist()
        bx1, by1, bx2, by2 = sample.box[0].tolist()
        assert x2 + 1 <= bx1 or bx2 + 1 <= x1 or y2 + 1 <= by1 or by2 + 1 <= y1
        corners = [(x, y) for x in (x1, x2) for y in (y1, y2)]
        inside += all(((x - 32) ** 2 + (y - 32) ** 2) ** 0.5 < 32 for x, y in corners)
    assert inside >= 50  # mostly quadrant centres, well inside the inscribed circle
