"""dave_lightning: DAVE attributions for timm Vision Transformers and tools to monitor them.

The core imports neither Lightning nor the metrics:

>>> import torch
>>> from timm.models.vision_transformer import VisionTransformer
>>> import dave_lightning as dl
>>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
...                           num_classes=4)
>>> maps = dl.DAVE(model, num_samples=4).attribute(torch.randn(1, 3, 32, 32), target=2)
>>> maps.shape
torch.Size([1, 32, 32])
"""

from dave_lightning.aggregation import robust_mean
from dave_lightning.attributor import Attributor
from dave_lightning.dave import DAVE, DEFAULT_NOISE_ALPHA, default_noise_alpha
from dave_lightning.effective import check_supported, effective_mode
from dave_lightning.errors import (
    BadInputError,
    ConfigurationError,
    DaveError,
    UnsupportedModelError,
)
from dave_lightning.postprocess import postprocess_for_display
from dave_lightning.transforms import LocalTransformDistribution

__version__ = "0.1.0"

__all__ = [
    "DAVE",
    "DEFAULT_NOISE_ALPHA",
    "Attributor",
    "BadInputError",
    "ConfigurationError",
    "DaveError",
    "LocalTransformDistribution",
    "UnsupportedModelError",
    "__version__",
    "check_supported",
    "default_noise_alpha",
    "effective_mode",
    "postprocess_for_display",
    "robust_mean",
]
