"""dave_lightning: DAVE attributions for timm Vision Transformers and tools to monitor them.

Names are imported lazily on first use, so ``import dave_lightning.metrics`` does not pull in
timm, and the core never pulls in Lightning:

>>> import torch
>>> from timm.models.vision_transformer import VisionTransformer
>>> import dave_lightning as dl
>>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
...                           num_classes=4)
>>> maps = dl.DAVE(model, num_samples=4).attribute(torch.randn(1, 3, 32, 32), target=2)
>>> maps.shape
torch.Size([1, 32, 32])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dave_lightning._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Attributor": "dave_lightning.attributor",
    "BadInputError": "dave_lightning.errors",
    "CalibrationWarning": "dave_lightning.calibration",
    "ConfigurationError": "dave_lightning.errors",
    "DAVE": "dave_lightning.dave",
    "DEFAULT_NOISE_ALPHA": "dave_lightning.dave",
    "DaveError": "dave_lightning.errors",
    "LocalTransformDistribution": "dave_lightning.transforms",
    "SensitivityCurve": "dave_lightning.calibration",
    "UnsupportedModelError": "dave_lightning.errors",
    "available_attributors": "dave_lightning.registry",
    "calibrate_noise_alpha": "dave_lightning.calibration",
    "check_supported": "dave_lightning.effective",
    "default_noise_alpha": "dave_lightning.dave",
    "effective_mode": "dave_lightning.effective",
    "get_attributor": "dave_lightning.registry",
    "postprocess_for_display": "dave_lightning.postprocess",
    "register_attributor": "dave_lightning.registry",
    "robust_mean": "dave_lightning.aggregation",
}

__all__ = [
    "DAVE",
    "DEFAULT_NOISE_ALPHA",
    "Attributor",
    "BadInputError",
    "CalibrationWarning",
    "ConfigurationError",
    "DaveError",
    "LocalTransformDistribution",
    "SensitivityCurve",
    "UnsupportedModelError",
    "__version__",
    "available_attributors",
    "calibrate_noise_alpha",
    "check_supported",
    "default_noise_alpha",
    "effective_mode",
    "get_attributor",
    "postprocess_for_display",
    "register_attributor",
    "robust_mean",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from dave_lightning.aggregation import robust_mean
    from dave_lightning.attributor import Attributor
    from dave_lightning.calibration import (
        CalibrationWarning,
        SensitivityCurve,
        calibrate_noise_alpha,
    )
    from dave_lightning.dave import DAVE, DEFAULT_NOISE_ALPHA, default_noise_alpha
    from dave_lightning.effective import check_supported, effective_mode
    from dave_lightning.errors import (
        BadInputError,
        ConfigurationError,
        DaveError,
        UnsupportedModelError,
    )
    from dave_lightning.postprocess import postprocess_for_display
    from dave_lightning.registry import available_attributors, get_attributor, register_attributor
    from dave_lightning.transforms import LocalTransformDistribution
