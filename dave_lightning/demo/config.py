"""What the demo is asked to do (:class:`DemoConfig`) and what it measured (:class:`DemoResult`).

Plain data, apart from :meth:`DemoConfig.accelerator` (which asks torch whether a GPU is there):
the training (:mod:`~dave_lightning.demo.run`), the shortcut measurement
(:mod:`~dave_lightning.demo.shortcut`) and the report (:mod:`~dave_lightning.demo.report`) all
read them without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dave_lightning.data import IMAGENET_MEAN, IMAGENET_STD
from dave_lightning.errors import ConfigurationError

__all__ = ["DEFAULT_MODEL", "DemoConfig", "DemoResult"]

DEFAULT_MODEL = "vit_tiny_patch16_224"
"""The demo's default timm architecture, shrunk for CPU (see :meth:`DemoConfig.model_kwargs`)."""


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the demo; the defaults take about five minutes on two CPU cores."""

    epochs: int = 16
    out: Path = Path("runs/demo")
    spurious: bool = False
    seed: int = 0
    device: str = "auto"
    model: str = DEFAULT_MODEL
    pretrained: bool = False
    image_size: int = 64
    train_size: int = 2048
    val_size: int = 256
    batch_size: int = 32
    methods: tuple[str, ...] = ("dave", "gradient")
    num_samples: int = 16
    num_images: int = 32
    lr: float = 1e-3
    augment: bool = True
    progress: bool = True

    def model_kwargs(self) -> dict[str, Any]:
        """``timm.create_model`` arguments: the default model is shrunk to a CPU-sized ViT.

        ``pretrained_cfg_overlay`` makes the model's timm data configuration say how the demo
        feeds it, so ``dave-lightning explain --checkpoint`` preprocesses alike: no crop (the
        images are rendered at the input size), and, for a model trained from scratch, the
        ImageNet statistics the embedded data is normalised with. Pretrained weights keep the
        statistics they were trained with; the data follows them (see
        :func:`~dave_lightning.demo.run.normalization`).
        """
        overlay: dict[str, Any] = {"crop_pct": 1.0}
        if not self.pretrained:
            overlay.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        kwargs: dict[str, Any] = {
            "img_size": self.image_size,
            "global_pool": "avg",
            "pretrained_cfg_overlay": overlay,
        }
        if self.shrunk:
            kwargs.update(patch_size=8, embed_dim=96, depth=4, num_heads=3, dynamic_img_size=True)
        return kwargs

    @property
    def shrunk(self) -> bool:
        """Whether the default model is built CPU-sized (with full-resolution GridPG grids)."""
        return self.model == DEFAULT_MODEL and not self.pretrained

    def accelerator(self) -> str:
        """``"gpu"`` when asked or (``"auto"``) available, else ``"cpu"``.

        Raises:
            ConfigurationError: When a GPU is asked for and none is available.
        """
        if self.device == "auto":
            return "gpu" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") or self.device == "gpu":
            if not torch.cuda.is_available():
                raise ConfigurationError(
                    f"--device {self.device}: no CUDA GPU is available here; use --device cpu"
                )
            return "gpu"
        return "cpu"


@dataclass
class DemoResult:
    """What the demo measured: per-epoch accuracy and explanation scores, and where it wrote."""

    config: DemoConfig
    accuracy: list[dict[str, float]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    clean_accuracy: float | None = None
    cue_share: dict[str, float] = field(default_factory=dict)
    object_share: float = 0.0
    cue_area: float = 0.0
    log_dir: Path | None = None
    class_names: tuple[str, ...] = ()
