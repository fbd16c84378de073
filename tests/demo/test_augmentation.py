"""The demo trains on augmented images by default; boxes follow the image; validation is clean."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from dave_lightning.cli import _build_parser
from dave_lightning.data import SyntheticShapes
from dave_lightning.demo.augmentation import Augmented, train_augmentation
from dave_lightning.demo.run import DemoConfig, datasets, fit_classifier, training_data

SMALL = {"image_size": 32, "train_size": 12, "val_size": 6, "batch_size": 4}


class FixedCrop(v2.RandomResizedCrop):
    """torchvision's RandomResizedCrop with the crop it draws fixed (top, left, height, width)."""

    def __init__(self, size: int, top: int, left: int, height: int, width: int) -> None:
        super().__init__(size)
        self.fixed = {"top": top, "left": left, "height": height, "width": width}

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return dict(self.fixed)


class OneItem(torch.utils.data.Dataset):
    """One ``(image, label, box)`` item: a bright rectangle exactly where its box says."""

    def __init__(self, box: list[float], size: int = 64) -> None:
        x1, y1, x2, y2 = (int(v) for v in box)
        self.image = torch.zeros(3, size, size)
        self.image[:, y1:y2, x1:x2] = 1.0
        self.box = torch.tensor([box])

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.image.clone(), 3, self.box.clone()


def bright_box(image: torch.Tensor) -> list[float]:
    """The end-exclusive box of the pixels above 0.5 (the rectangle after the transform)."""
    rows = (image[0] > 0.5).any(dim=1).nonzero()[:, 0]
    columns = (image[0] > 0.5).any(dim=0).nonzero()[:, 0]
    return [float(columns[0]), float(rows[0]), float(columns[-1] + 1), float(rows[-1] + 1)]


def test_augmentation_is_on_by_default_and_off_with_the_option() -> None:
    train, _ = datasets(DemoConfig(**SMALL))
    assert DemoConfig().augment is True
    assert isinstance(training_data(DemoConfig(**SMALL), train), Augmented)
    assert training_data(DemoConfig(augment=False, **SMALL), train) is train


def test_the_command_line_flag_turns_augmentation_off() -> None:
    parser, _ = _build_parser()
    assert parser.parse_args(["demo"]).augment is True
    assert parser.parse_args(["demo", "--no-augment"]).augment is False
    assert parser.parse_args(["demo", "--augment"]).augment is True


def test_a_flip_moves_the_box_with_the_image() -> None:
    item = OneItem([8.0, 16.0, 24.0, 40.0])
    image, label, box = Augmented(item, v2.RandomHorizontalFlip(p=1.0))[0]
    assert label == 3
    assert torch.equal(image, item.image.flip(-1))
    assert box.tolist() == [[40.0, 16.0, 56.0, 40.0]]  # x -> 64 - x
    assert bright_box(image) == box[0].tolist()


def test_a_resized_crop_moves_and_scales_the_box() -> None:
    # Crop rows 8..40 and columns 4..36 (32x32), resized to 64x64: coordinates shift, then double.
    item = OneItem([12.0, 16.0, 28.0, 32.0])
    image, _, box = Augmented(item, FixedCrop(64, top=8, left=4, height=32, width=32))[0]
    assert box.tolist() == [[16.0, 16.0, 48.0, 48.0]]
    assert bright_box(image) == box[0].tolist()


def test_a_crop_cutting_the_object_clamps_the_box_to_the_image() -> None:
    item = OneItem([2.0, 2.0, 20.0, 20.0])
    _, _, box = Augmented(item, FixedCrop(32, top=10, left=10, height=32, width=32))[0]
    assert box.tolist() == [[0.0, 0.0, 10.0, 10.0]]


@pytest.mark.slow
def test_the_demo_pipeline_changes_the_images_and_keeps_boxes_in_the_frame() -> None:
    train = SyntheticShapes("train", length=16, image_size=32)
    augmented = Augmented(train, train_augmentation(32))
    torch.manual_seed(0)
    changed = 0
    for index in range(len(train)):
        image, label, box = augmented[index]
        original, original_label, _ = train[index]
        assert image.shape == original.shape
        assert label == original_label
        assert box.shape == (1, 4)
        assert (box >= 0).all()
        assert (box <= 32).all()
        assert (box[0, :2] <= box[0, 2:]).all()
        changed += not torch.allclose(image, original)
    assert changed >= 14


def loaders_of_fit(monkeypatch: pytest.MonkeyPatch, config: DemoConfig) -> list[DataLoader]:
    """The training and validation loaders ``fit_classifier`` hands to ``Trainer.fit``."""
    seen: list[DataLoader] = []
    monkeypatch.setattr(pl.Trainer, "fit", lambda self, module, *loaders: seen.extend(loaders))
    fit_classifier(config)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("augment", [True, False])
def test_validation_is_never_augmented(monkeypatch: pytest.MonkeyPatch, augment: bool) -> None:
    config = DemoConfig(augment=augment, progress=False, **SMALL)
    train_loader, val_loader = loaders_of_fit(monkeypatch, config)
    assert isinstance(train_loader.dataset, Augmented) is augment
    val = val_loader.dataset
    assert isinstance(val, SyntheticShapes)
    assert val.split == "val"
    reference = datasets(config)[1]
    for index in range(len(val)):
        assert torch.equal(val[index][0], reference[index][0])


def first_epoch(monkeypatch: pytest.MonkeyPatch, seed: int) -> torch.Tensor:
    """The images of the training loader's first epoch, as ``fit_classifier`` sets it up."""
    config = DemoConfig(progress=False, seed=seed, **SMALL)
    train_loader, _ = loaders_of_fit(monkeypatch, config)
    return torch.cat([images for images, _, _ in train_loader])


@pytest.mark.slow
def test_augmented_batches_repeat_for_a_seed_and_differ_between_seeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, again, other = (first_epoch(monkeypatch, seed) for seed in (5, 5, 6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.slow
def test_augmented_training_is_reproducible_for_a_seed() -> None:
    config = DemoConfig(epochs=1, progress=False, seed=3, **SMALL)
    first = fit_classifier(config)[0].state_dict()
    second = fit_classifier(config)[0].state_dict()
    other = fit_classifier(DemoConfig(epochs=1, progress=False, seed=3, augment=False, **SMALL))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[0].state_dict()[k]) for k in first)
