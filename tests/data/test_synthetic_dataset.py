"""SyntheticShapes: determinism, splits, RNG hygiene, boxes, masks, labels, sizes, arguments."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dave_lightning.data import SHAPE_NAMES, SyntheticShapes, denormalize
from dave_lightning.errors import BadInputError


def tight_box_reference(mask: torch.Tensor) -> list[float]:
    rows, columns = np.nonzero(mask.numpy())
    return [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]


def test_same_arguments_give_identical_samples() -> None:
    first = SyntheticShapes("train", length=8, seed=3)
    second = SyntheticShapes("train", length=8, seed=3)
    for index in (0, 5, 7):
        a, b = first.sample(index), second.sample(index)
        assert torch.equal(a.image, b.image)
        assert torch.equal(a.mask, b.mask)
        assert torch.equal(a.box, b.box)
        assert a.label == b.label


def test_sample_does_not_depend_on_access_order_or_cache() -> None:
    reference = SyntheticShapes("val", length=6).sample(4).image
    shuffled = SyntheticShapes("val", length=6)
    for index in (5, 1, 3):
        shuffled.sample(index)
    cached = SyntheticShapes("val", length=6, cache=True)
    assert torch.equal(shuffled.sample(4).image, reference)
    assert torch.equal(cached.sample(4).image, reference)
    served = cached.sample(4)  # from the cache, as a copy the caller may modify
    assert torch.equal(served.image, reference)
    served.image.zero_()
    served.pixels.zero_()
    served.mask.zero_()
    assert torch.equal(cached.sample(4).image, reference)
    assert torch.equal(cached.sample(4).mask, shuffled.sample(4).mask)
    assert torch.equal(shuffled.sample(-2).image, reference)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (dict(split="train", seed=0, index=0), dict(split="train", seed=0, index=1)),
        (dict(split="train", seed=0, index=0), dict(split="val", seed=0, index=0)),
        (dict(split="val", seed=0, index=0), dict(split="test", seed=0, index=0)),
        (dict(split="train", seed=0, index=0), dict(split="train", seed=1, index=0)),
    ],
)
def test_index_split_and_seed_change_the_image(left: dict[str, Any], right: dict[str, Any]) -> None:
    def image(split: str, seed: int, index: int) -> torch.Tensor:
        return SyntheticShapes(split, length=4, seed=seed).sample(index).pixels

    difference = (image(**left).float() - image(**right).float()).abs().mean()
    assert difference > 10  # unrelated images, not a shifted copy


def test_global_rng_is_neither_read_nor_advanced() -> None:
    torch.manual_seed(1)
    state = torch.get_rng_state()
    dataset = SyntheticShapes("train", length=4, spurious=True)
    first = dataset.sample(2).image
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)
    assert torch.equal(SyntheticShapes("train", length=4, spurious=True).sample(2).image, first)


def test_box_is_the_tight_box_of_the_mask() -> None:
    dataset = SyntheticShapes("train", length=36, image_size=(40, 72))
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        assert sample.mask.dtype == torch.bool
        assert sample.mask.shape == (40, 72)
        assert sample.box.dtype == torch.float32
        assert sample.box.shape == (1, 4)
        assert sample.box[0].tolist() == tight_box_reference(sample.mask)


def test_mask_is_exactly_where_the_shape_was_painted() -> None:
    # Without clutter the background is flat grey (0.5); shapes are dark or light, so the
    # per-pixel channel mean separates them by >= 0.2 while the noise is <= 0.06 / sqrt(3).
    dataset = SyntheticShapes("test", length=24, clutter=0.0)
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        offset = (sample.pixels.float().mean(dim=0) / 255 - 0.5).abs()
        assert offset[sample.mask].mean() > 0.2
        assert offset[~sample.mask].mean() < 0.05
        assert (offset[~sample.mask] > 0.15).float().mean() < 1e-3


def classify_mask(mask: torch.Tensor) -> str:
    """Name a shape from its mask alone (upright within 15 degrees), independently of _render."""
    rows, columns = np.nonzero(mask.numpy())
    height, width = rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
    centre_y, centre_x = (rows.min() + rows.max()) // 2, (columns.min() + columns.max()) // 2
    reach = np.sqrt((rows - rows.mean()) ** 2 + (columns - columns.mean()) ** 2).max()
    roundness = reach / max(height, width)  # 0.5 for a circle, >= 0.577 for a square
    if max(height, width) / min(height, width) > 1.5:
        return "bar"
    if not mask[int(centre_y), int(centre_x)]:
        return "ring" if roundness < 0.54 else "frame"
    if abs(rows.mean() - centre_y) / height > 0.08:
        return "triangle"
    if rows.size / (height * width) < 0.6:
        return "cross"
    return "disc" if roundness < 0.54 else "square"


def test_labels_name_the_shape_that_is_drawn() -> None:
    dataset = SyntheticShapes("train", length=70, image_size=128, classes=list(SHAPE_NAMES))
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        assert classify_mask(sample.mask) == dataset.classes[sample.label], index


def test_labels_are_balanced_and_every_class_appears() -> None:
    dataset = SyntheticShapes("train", length=60, classes=["ring", "disc", "cross", "bar"])
    labels = [dataset[index][1] for index in range(len(dataset))]
    assert sorted(labels[:4]) == [0, 1, 2, 3]
    assert np.bincount(labels).tolist() == [15, 15, 15, 15]
    assert labels[:4] != labels[4:8] or labels[4:8] != labels[8:12]  # seeded order, not cyclic
    assert [dataset.label(index) for index in range(60)] == labels


@pytest.mark.parametrize("size", [(48, 80), (80, 48), (16, 16), (16, 40), 33])
def test_any_image_size(size: int | tuple[int, int]) -> None:
    dataset = SyntheticShapes(
        "train", length=70, image_size=size, classes=list(SHAPE_NAMES), spurious=True
    )
    height, width = (size, size) if isinstance(size, int) else size
    for index in range(len(dataset)):
        image, _, box = dataset[index]
        assert image.shape == (3, height, width)
        x1, y1, x2, y2 = box[0].tolist()
        assert 1 <= x1 < x2 <= width - 1
        assert 1 <= y1 < y2 <= height - 1


def test_items_collate_and_iterate() -> None:
    dataset = SyntheticShapes("val", length=5, image_size=(32, 48))
    images, labels, boxes = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 32, 48)
    assert images.dtype == torch.float32
    assert labels.shape == (4,)
    assert labels.dtype == torch.int64
    assert boxes.shape == (4, 1, 4)
    assert len(list(iter(dataset))) == 5  # iteration stops at IndexError
    with_masks = dataset.with_masks()
    assert len(with_masks) == 5
    *_, masks = next(iter(DataLoader(with_masks, batch_size=4)))
    assert masks.shape == (4, 32, 48)
    assert masks.dtype == torch.bool


def test_normalisation_round_trips_to_the_pixels() -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    dataset = SyntheticShapes("train", length=2, mean=mean, std=std)
    sample = dataset.sample(1)
    expected = (sample.pixels.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
        std
    ).view(3, 1, 1)
    torch.testing.assert_close(sample.image, expected)
    restored = (dataset.denormalize(sample.image) * 255).round().to(torch.uint8)
    assert torch.equal(restored, sample.pixels)
    default = SyntheticShapes("train", length=2).sample(1)
    assert torch.equal((denormalize(default.image) * 255).round().to(torch.uint8), default.pixels)


def test_clutter_scales_the_background_contrast() -> None:
    def spread(clutter: float) -> float:
        dataset = SyntheticShapes("train", length=8, clutter=clutter)
        samples = [dataset.sample(index) for index in range(8)]
        return float(np.mean([s.pixels.float()[:, ~s.mask].std() for s in samples]))

    assert spread(0.0) < 12 < spread(0.5) < spread(1.0)  # 0: just the pixel noise


def test_pickles_for_worker_processes() -> None:
    dataset = SyntheticShapes("train", length=3, spurious=True)
    copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(copy[2][0], dataset[2][0])
    assert "split='train'" in repr(dataset)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(split="training"), r"`split`: expected one of 'train', 'val', 'test'"),
        (dict(length=0), r"`length`: expected an integer >= 1"),
        (dict(length=2.0), r"`length`: expected an integer"),
        (dict(seed="0"), r"`seed`: expected an integer"),
        (dict(image_size=15), r"`image_size`: expected .* each >= 16"),
        (dict(image_size=(64,)), r"`image_size`: expected an integer or an \(H, W\) pair"),
        (dict(image_size=(64, True)), r"`image_size`"),
        (dict(classes=["disc"]), r"`classes`: expected at least 2 distinct names"),
        (dict(classes=["disc", "disc"]), r"`classes`: expected at least 2 distinct names"),
        (dict(classes=["disc", "hexagon"]), r"`classes`: .*disc, square, triangle"),
        (dict(classes="disc,ring"), r"`classes`"),
        (dict(classes=["disc", 3]), r"`classes`"),
        (dict(spurious_prob=1.5), r"`spurious_prob`: expected a number in \[0, 1\]"),
        (dict(clutter=-0.1), r"`clutter`: expected a number in \[0, 1\]"),
        (dict(eval_cue="random"), r"`eval_cue`: expected one of 'uncorrelated', 'absent'"),
        (dict(mean=(0.5, 0.5)), r"`mean`: expected three numbers"),
        (dict(mean=(0.5, 0.5, float("nan"))), r"`mean`: expected three numbers"),
        (dict(std=(0.2, 0.0, 0.2)), r"`std`: expected three positive numbers"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        SyntheticShapes(**kwargs)


def test_bad_indices_raise() -> None:
    dataset = SyntheticShapes("train", length=3)
    with pytest.raises(IndexError, match="index 3 is out of range for a dataset of 3"):
        dataset[3]
    with pytest.raises(IndexError, match="index -4"):
        dataset.sample(-4)
    with pytest.raises(IndexError, match="index 5"):
        dataset.label(5)
    assert dataset.label(-1) == dataset[2][1]
    with pytest.raises(BadInputError, match=r"`index`: expected an integer, received str"):
        dataset["0"]  # type: ignore[index]
    assert torch.equal(dataset[np.int64(1)][0], dataset[1][0])
    assert torch.equal(dataset[torch.tensor(1)][0], dataset[1][0])


def test_denormalize_rejects_non_images() -> None:
    expected = r"`images`: expected a floating-point \(\.\.\., 3, H, W\) tensor"
    with pytest.raises(BadInputError, match=expected):
        denormalize(torch.zeros(1, 4, 2, 2))
    with pytest.raises(BadInputError, match=expected):
        denormalize(torch.zeros(3, 2, 2, dtype=torch.uint8))
