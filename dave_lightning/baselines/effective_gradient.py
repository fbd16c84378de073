"""Step I of DAVE alone: the effective gradient of the raw target logit times the input.

``m = ∂f_c^frozen(x)/∂x ⊙ x``, where ``∂^frozen`` is the gradient in
:func:`~dave_lightning.effective_mode` (attention softmax, LayerNorm ``1/std`` and GELU gates held
constant in the backward pass). This is DAVE with one sample, no transformation and no noise, and
it is close to CP-LRP (LRP with the conservative-propagation rules for attention and LayerNorm).
One forward pass per image, shared by all its targets, at most ``max_batch_size`` images per pass.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> EffectiveInputXGradient(model).attribute(torch.randn(2, 3, 32, 32), target=3).shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dave_lightning.attributor import Attributor
from dave_lightning.effective import check_supported, effective_mode

__all__ = ["EffectiveInputXGradient"]


class EffectiveInputXGradient(Attributor):
    """Effective (Step I) gradient times input, the cheapest member of the DAVE family.

    Args:
        model: A timm ViT supported by :func:`~dave_lightning.effective_mode`.
        max_batch_size: Largest number of images per forward/backward pass.
        autocast_dtype: ``None`` (default) computes with autocast off; e.g. ``torch.bfloat16``
            opts in.
        affine_modules: Extra module classes to treat as affine in effective mode.

    Raises:
        UnsupportedModelError: When the model holds a module effective mode cannot freeze.

    Example:
        >>> import torch
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> model = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=1,
        ...                           num_heads=2, num_classes=3, class_token=False,
        ...                           global_pool="avg", no_embed_class=True, qkv_bias=False,
        ...                           fc_norm=False)
        >>> with torch.no_grad():  # zero biases, position embedding and tokens
        ...     for name, parameter in model.named_parameters():
        ...         if not name.endswith("weight"):
        ...             _ = parameter.zero_()
        >>> x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
        >>> maps = EffectiveInputXGradient(model.double()).attribute(x, target=2)
        >>> torch.allclose(maps.sum(), model(x)[0, 2])  # completeness of the effective map
        True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        max_batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
        affine_modules: Sequence[type[nn.Module]] = (),
    ) -> None:
        super().__init__(model, max_batch_size=max_batch_size, autocast_dtype=autocast_dtype)
        self.affine_modules = tuple(affine_modules)
        check_supported(model, self.affine_modules)

    def _attribute(self, images: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        with effective_mode(self.model, self.affine_modules):
            return torch.cat(
                [
                    self._chunk_maps(chunk, chunk_targets)
                    for chunk, chunk_targets in zip(
                        images.split(self.max_batch_size),
                        targets.split(self.max_batch_size),
                        strict=True,
                    )
                ]
            )

    def _chunk_maps(self, images: Tensor, targets: Tensor) -> Tensor:
        """``(n, K, C, H, W)``: one forward pass, one backward pass per target."""
        leaf = images.clone().requires_grad_(True)
        scores = self._target_scores(self.model(leaf), targets)
        count = scores.shape[1]
        gradients = [
            torch.autograd.grad(scores[:, k].sum(), leaf, retain_graph=k + 1 < count)[0]
            for k in range(count)
        ]
        return torch.stack(gradients, dim=1) * images[:, None]
