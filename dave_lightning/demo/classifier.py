"""ImageClassifier: a plain LightningModule that fine-tunes any timm model for classification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from dave_lightning._timm_models import create_model

__all__ = ["ImageClassifier"]


class ImageClassifier(pl.LightningModule):
    """A timm model trained with cross-entropy, AdamW and a one-cycle learning-rate schedule.

    Batches are ``(images, labels, ...)`` tuples (extra entries such as boxes are ignored) or dicts
    with ``image(s)``/``label(s)`` keys. The hyperparameters saved in checkpoints (model name and
    keyword arguments, class names) let ``dave-lightning explain --checkpoint`` rebuild the model.

    Args:
        model_name: A timm model name.
        num_classes: Classes of the new head.
        model_kwargs: Extra ``timm.create_model`` arguments (e.g. ``img_size``, ``patch_size``,
            ``pretrained_cfg_overlay`` to record the preprocessing the model is trained with).
        class_names: Optional names of the classes (used in figures).
        pretrained: Start from timm's pretrained weights (needs network access).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        label_smoothing: Cross-entropy label smoothing.

    Raises:
        ModelCreationError: When timm cannot build the model (one-line message).

    Example:
        >>> import torch
        >>> module = ImageClassifier("vit_tiny_patch16_224", num_classes=3,
        ...                          model_kwargs={"img_size": 32, "patch_size": 8, "depth": 1})
        >>> module(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        model_name: str = "vit_tiny_patch16_224",
        num_classes: int = 6,
        model_kwargs: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        pretrained: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(
            model_name, pretrained=pretrained, num_classes=num_classes, **dict(model_kwargs or {})
        )
        self.train_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, images: Tensor) -> Tensor:
        """Raw logits."""
        logits: Tensor = self.model(images)
        return logits

    @staticmethod
    def _split(batch: Any) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Mapping):
            images = batch.get("images", batch.get("image"))
            labels = batch.get("labels", batch.get("label"))
            return images, labels
        return batch[0], batch[1]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Cross-entropy on one batch; logs the loss and accuracy."""
        images, labels = self._split(batch)
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams["label_smoothing"])
        self.train_accuracy(logits, labels)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Validation loss and accuracy."""
        images, labels = self._split(batch)
        logits = self(images)
        self.val_accuracy(logits, labels)
        self.log("val_loss", F.cross_entropy(logits, labels), prog_bar=False)
        self.log("val_acc", self.val_accuracy, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        """AdamW with a one-cycle schedule over the whole run."""
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams["lr"],
            total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
            pct_start=0.15,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
