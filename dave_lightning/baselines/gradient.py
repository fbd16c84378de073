"""Plain input gradient and Input-times-Gradient, computed by Captum.

Both return the signed map of the raw target logit ``f_c``: ``∂f_c(x)/∂x`` (Captum's ``Saliency``
with ``abs=False``) and ``x ⊙ ∂f_c(x)/∂x`` (Captum's ``InputXGradient``), summed over colour
channels unless ``keep_channels=True``. One forward and one backward pass per (image, target) row,
at most ``max_batch_size`` rows per pass.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> images = torch.randn(2, 3, 32, 32)
    >>> Gradient(model).attribute(images, target=1).shape
    torch.Size([2, 32, 32])
    >>> InputXGradient(model).attribute(images, target=torch.tensor([[0, 1], [2, 3]])).shape
    torch.Size([2, 2, 32, 32])
"""

from __future__ import annotations

from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import Saliency
from torch import Tensor

from dave_lightning.baselines._captum_adapter import RowAttributor

__all__ = ["Gradient", "InputXGradient"]


class Gradient(RowAttributor):
    """The signed gradient of the raw target logit with respect to the input pixels.

    Args:
        model: A classifier returning ``(B, num_classes)`` raw logits.
        max_batch_size: Largest number of model inputs per forward/backward pass.
        autocast_dtype: ``None`` (default) computes with autocast off; e.g. ``torch.bfloat16``
            opts in.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> maps = Gradient(model).attribute(torch.randn(1, 3, 2, 2), target=0, keep_channels=True)
        >>> torch.equal(maps[0], model[1].weight[0].reshape(3, 2, 2))
        True
    """

    def _attribute_rows(self, inputs: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        saliency = Saliency(self._row_scores)
        return saliency.attribute(
            self._leaf(inputs), abs=False, additional_forward_args=(targets,)
        ).detach()


class InputXGradient(RowAttributor):
    """The input times the signed gradient of the raw target logit, ``x ⊙ ∂f_c(x)/∂x``.

    Args:
        model: A classifier returning ``(B, num_classes)`` raw logits.
        max_batch_size: Largest number of model inputs per forward/backward pass.
        autocast_dtype: ``None`` (default) computes with autocast off; e.g. ``torch.bfloat16``
            opts in.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3, bias=False))
        >>> x = torch.randn(1, 3, 2, 2)
        >>> maps = InputXGradient(model).attribute(x, target=2)
        >>> torch.allclose(maps.sum(), model(x)[0, 2])  # completeness of a linear map
        True
    """

    def _attribute_rows(self, inputs: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        method = CaptumInputXGradient(self._row_scores)
        return method.attribute(self._leaf(inputs), additional_forward_args=(targets,)).detach()
