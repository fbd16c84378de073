"""A tiny LightningModule, data with boxes, and readers for what the monitor logged."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, Dataset

from dave_lightning.baselines.gradient import Gradient
from dave_lightning.callbacks._probe import select_probe
from tests.helpers import tiny_vit

NUM_CLASSES = 5


class BoxedImages(Dataset):
    """Random 32×32 images, labels cycling over the classes, one box per image."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(size, 3, 32, 32, generator=generator)
        self.labels = torch.arange(size) % NUM_CLASSES
        corners = torch.randint(0, 16, (size, 2), generator=generator).float()
        self.boxes = torch.cat([corners, corners + 16], dim=1)[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index], self.boxes[index]


class TinyClassifier(pl.LightningModule):
    """A tiny ViT with dropout (so a disturbed RNG would change training)."""

    def __init__(self, lr: float = 0.05, drop_rate: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = tiny_vit(
            num_classes=NUM_CLASSES, drop_rate=drop_rate, proj_drop_rate=drop_rate
        )
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        self.seen.append(labels.clone())
        return F.cross_entropy(self(images), labels)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = batch[0], batch[1]
        self.log("val_loss", F.cross_entropy(self(images), labels))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def loaders(
    train_size: int = 40, val_size: int = 20, batch_size: int = 8
) -> tuple[DataLoader, DataLoader]:
    train = DataLoader(BoxedImages(train_size, 0), batch_size=batch_size, shuffle=True)
    val = DataLoader(BoxedImages(val_size, 1), batch_size=batch_size)
    return train, val


def trainer(root: Path, callbacks: list[Any], **options: Any) -> pl.Trainer:
    settings: dict[str, Any] = dict(
        default_root_dir=str(root),
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        deterministic=True,
    )
    settings.update(options)
    return pl.Trainer(callbacks=callbacks, **settings)


def _load(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def events(root: Path) -> EventAccumulator:
    """The Lightning logger's TensorBoard run under ``root`` (its last version), every image."""
    runs = sorted(root.rglob("events.out.tfevents.*"))
    lightning = [run for run in runs if run.parent.name.startswith("version_")] or runs
    assert lightning, f"no event files under {root}"
    return _load(lightning[-1].parent)


def method_events(root: Path) -> dict[str, EventAccumulator]:
    """The per-method runs beside the Lightning run under ``root``: method name to its events."""
    runs = sorted(root.rglob("events.out.tfevents.*"))
    folders = {run.parent for run in runs if run.parent.parent.name.startswith("version_")}
    return {folder.name: _load(folder) for folder in sorted(folders)}


FAST = dict(num_images=10, num_samples=3, log_images=2, deletion_steps=4, max_grids=2)


class Spy(Gradient):
    """The gradient baseline, recording what each call saw (register it to use it)."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def _attribute(
        self, images: torch.Tensor, targets: torch.Tensor, image_ids: list[int]
    ) -> torch.Tensor:
        device = images.device.type
        record: dict[str, Any] = {
            "ids": list(image_ids),
            "targets": targets[:, 0].cpu(),
            "images_dtype": images.dtype,
            "parameter_dtypes": {p.dtype for p in self.model.parameters()},
            "autocast": torch.is_autocast_enabled(device),
            "autocast_dtype": torch.get_autocast_dtype(device),
        }
        maps = super()._attribute(images, targets, image_ids)
        record["maps_dtype"] = maps.dtype
        Spy.calls.append(record)
        return maps


class StateRecorder(pl.Callback):
    """Placed after the monitor: what the training state looks like right after its hook.

    (Lightning resets module modes after validation, so modes must be read here.)
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows.append(state_of(pl_module))


def state_of(model: torch.nn.Module) -> dict[str, Any]:
    """Modes, requires_grad flags, gradients and every global RNG stream, as comparable values."""
    return {
        "training": [module.training for module in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].copy(),
        "python": random.getstate(),
    }


MID_ACCUMULATION = dict(accumulate_grad_batches=2, val_check_interval=1)
"""Validation after every batch, mid-accumulation: training gradients are live during it."""


def training_fingerprint(root: Path, callbacks: list[Any], **options: Any) -> dict[str, Any]:
    """Fit a seeded TinyClassifier for two epochs; everything training depends on, afterwards.

    With :data:`MID_ACCUMULATION` options the monitor runs while parameters hold accumulated
    gradients (Lightning clears them before other validations), so ``.grad`` is put to the test.
    """
    recorder = StateRecorder()
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier()
    run = trainer(root, [*callbacks, recorder], **options)
    run.fit(model, *loaders())
    optimizer = run.optimizers[0]
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": [
            {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
            for state in optimizer.state_dict()["state"].values()
        ],
        "optimizer_holds_the_parameters": all(
            p is q
            for p, q in zip(optimizer.param_groups[0]["params"], model.parameters(), strict=True)
        ),
        "seen": torch.cat(model.seen),
        "after_fit": state_of(model),
        "after_each_validation": recorder.rows,
    }


def assert_same(first: Any, second: Any, where: str = "fingerprint") -> None:
    """Exact equality of nested dicts/lists/tuples of tensors, arrays and plain values."""
    if isinstance(first, torch.Tensor):
        assert isinstance(second, torch.Tensor), where
        assert first.dtype == second.dtype, where
        assert torch.equal(first, second), where
    elif isinstance(first, np.ndarray):
        assert np.array_equal(first, second), where
    elif isinstance(first, dict):
        assert first.keys() == second.keys(), where
        for key in first:
            assert_same(first[key], second[key], f"{where}[{key!r}]")
    elif isinstance(first, list | tuple):
        assert len(first) == len(second), where
        for index, (a, b) in enumerate(zip(first, second, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert first == second, where


VAL_PART = list(range(20, 30))  # a dataset shared with training: these are the validation images


def assert_probe_is_the_validation_part(make_loader: Any) -> None:
    """The probe of ``make_loader(BoxedImages(30))`` holds only (and, asked for more, all) of
    ``VAL_PART``, with each index's own image, the same for the same seed."""
    data = BoxedImages(30, 1)
    loader = make_loader(data)
    probe = select_probe(loader, 6, seed=0)
    assert len(probe) == 6
    assert set(probe.indices.tolist()) <= set(VAL_PART)
    for position, index in enumerate(probe.indices.tolist()):
        assert torch.equal(probe.images[position], data.images[index])
    assert torch.equal(select_probe(loader, 6, seed=0).indices, probe.indices)
    assert sorted(select_probe(loader, 50, seed=0).indices.tolist()) == VAL_PART
