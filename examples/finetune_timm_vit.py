"""Fine-tune any timm ViT with the AttributionMonitor, configured from a LightningCLI YAML file.

With the network, pretrained weights and your own ImageFolder:

    python examples/finetune_timm_vit.py fit --config examples/finetune_timm_vit.yaml \
        --data.data_dir /path/to/imagefolder --data.image_size 224 \
        --model.model_name vit_small_patch16_224 --model.pretrained true --model.model_kwargs '{}'

Offline, on the embedded synthetic dataset (the default of the YAML file):

    python examples/finetune_timm_vit.py fit --config examples/finetune_timm_vit.yaml

``data_dir`` must hold ``train/`` and ``val/`` sub-folders in torchvision's ImageFolder layout
(one folder per class). ImageFolder batches carry no object boxes, so the monitor skips EnergyPG
(with a warning); GridPG and pixel deletion still run.

The data is preprocessed as the model's timm data configuration says (mean and std; for an
ImageFolder also resizing, crop and interpolation), so pretrained weights get the statistics they
were trained with, and the monitor, which undoes the model's mean/std for its overlays, and
``dave-lightning explain --checkpoint`` see the same preprocessing. A model trained from scratch
states its preprocessing with ``pretrained_cfg_overlay`` (see the YAML file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import timm
from pytorch_lightning.cli import LightningCLI
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dave_lightning.data import DEFAULT_CLASSES, SyntheticShapes
from dave_lightning.demo import ImageClassifier


class ImageFolderOrShapes(pl.LightningDataModule):
    """An ImageFolder (``data_dir/train``, ``data_dir/val``), or the embedded shapes without one.

    Args:
        data_dir: Folder with ``train/`` and ``val/`` ImageFolder trees; ``None`` uses the
            embedded synthetic dataset.
        image_size: Side of the (square) model input.
        batch_size: Batch size of both loaders.
        num_workers: Loader worker processes.
        train_size: Embedded dataset only: number of training images.
        val_size: Embedded dataset only: number of validation images.
        spurious: Embedded dataset only: plant the class-coloured shortcut mark.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        train_size: int = 2048,
        val_size: int = 256,
        spurious: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        """Classes of the data (linked to the model's head by the CLI)."""
        if self.hparams.data_dir is None:
            return len(DEFAULT_CLASSES)
        from torchvision.datasets.folder import find_classes

        return len(find_classes(str(Path(self.hparams.data_dir) / "train"))[0])

    def setup(self, stage: str) -> None:
        if self.train_set is None:
            self.build(self.trainer.lightning_module)

    def data_config(self, module: nn.Module) -> dict[str, Any]:
        """The timm data configuration of ``module.model`` at ``image_size``."""
        size = self.hparams.image_size
        model = getattr(module, "model", module)
        return timm.data.resolve_data_config({"input_size": (3, size, size)}, model=model)

    def build(self, module: nn.Module) -> None:
        """Create both datasets, preprocessed as the model's timm data configuration says."""
        config, directory = self.data_config(module), self.hparams.data_dir
        if directory is None:
            options = dict(
                image_size=self.hparams.image_size,
                spurious=self.hparams.spurious,
                cue_placement="inset",
                mean=config["mean"],
                std=config["std"],
            )
            self.train_set = SyntheticShapes("train", length=self.hparams.train_size, **options)
            self.val_set = SyntheticShapes("val", length=self.hparams.val_size, **options)
            return
        from torchvision.datasets import ImageFolder

        train_tf = timm.data.create_transform(is_training=True, **config)
        val_tf = timm.data.create_transform(is_training=False, **config)
        self.train_set = ImageFolder(str(Path(directory) / "train"), transform=train_tf)
        self.val_set = ImageFolder(str(Path(directory) / "val"), transform=val_tf)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            shuffle=True,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers
        )


class FinetuneCLI(LightningCLI):
    """The model's head gets as many classes as the data has."""

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")


def main() -> None:
    FinetuneCLI(ImageClassifier, ImageFolderOrShapes, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
