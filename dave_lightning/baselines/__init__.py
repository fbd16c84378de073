"""The comparison methods, each an :class:`~dave_lightning.attributor.Attributor` like DAVE.

Every method returns signed (or, for LeGrad and ``"random"``, non-negative) maps ``(B, H, W)``, or
``(B, K, H, W)`` for several targets per image; is callable under ``no_grad`` and
``inference_mode``; runs the model in eval mode and restores every module's mode; never writes a
parameter's ``.grad``, never changes ``requires_grad``, leaves no hook or override on the model and
never touches the global RNG. Reach them by name with
:func:`dave_lightning.registry.get_attributor`. Each is imported on first use, so building DAVE
or Step I alone never imports Captum.

Example:
    >>> import torch
    >>> from dave_lightning.baselines import IntegratedGradients
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> images = torch.randn(2, 3, 32, 32)
    >>> with torch.inference_mode():
    ...     maps = IntegratedGradients(model, n_steps=4).attribute(images, target=1)
    >>> maps.shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dave_lightning._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DEFAULT_NOISE_LEVEL": "dave_lightning.baselines.smoothgrad",
    "INTEGRATION_METHODS": "dave_lightning.baselines.integrated_gradients",
    "EffectiveInputXGradient": "dave_lightning.baselines.effective_gradient",
    "Gradient": "dave_lightning.baselines.gradient",
    "InputXGradient": "dave_lightning.baselines.gradient",
    "IntegratedGradients": "dave_lightning.baselines.integrated_gradients",
    "LeGrad": "dave_lightning.baselines.legrad",
    "RandomAttributor": "dave_lightning.baselines.random_map",
    "SmoothGrad": "dave_lightning.baselines.smoothgrad",
}
"""Each public name -> its module, imported on first use (only some of them import Captum)."""

__all__ = [
    "DEFAULT_NOISE_LEVEL",
    "INTEGRATION_METHODS",
    "EffectiveInputXGradient",
    "Gradient",
    "InputXGradient",
    "IntegratedGradients",
    "LeGrad",
    "RandomAttributor",
    "SmoothGrad",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from dave_lightning.baselines.effective_gradient import EffectiveInputXGradient
    from dave_lightning.baselines.gradient import Gradient, InputXGradient
    from dave_lightning.baselines.integrated_gradients import (
        INTEGRATION_METHODS,
        IntegratedGradients,
    )
    from dave_lightning.baselines.legrad import LeGrad
    from dave_lightning.baselines.random_map import RandomAttributor
    from dave_lightning.baselines.smoothgrad import DEFAULT_NOISE_LEVEL, SmoothGrad
