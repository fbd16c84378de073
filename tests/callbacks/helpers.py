"""A tiny LightningModule, data with boxes, and readers for what the monitor logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, Dataset

from tests.conftest import tiny_vit

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


def events(root: Path) -> EventAccumulator:
    """The single TensorBoard run under ``root``, loaded with every image."""
    runs = sorted(root.rglob("events.out.tfevents.*"))
    assert runs, f"no event files under {root}"
    accumulator = EventAccumulator(str(runs[-1].parent), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


FAST = dict(num_images=10, num_samples=3, log_images=2, deletion_steps=4, max_grids=2)
