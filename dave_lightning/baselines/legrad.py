"""LeGrad (Bousselham et al., 2024) for timm Vision Transformers.

W. Bousselham, A. Boggust, S. Chaybouti, H. Strobelt, H. Kuehne. "LeGrad: An Explainability
Method for Vision Transformers via Feature Formation Sensitivity", arXiv:2404.03214 (ICCV 2025).

For an image and a target class ``c``, with ``z^l`` the output of block ``l`` (``l = 1..L``) and
``A^l`` that block's post-softmax attention map ``(heads, N, N)``:

1. ``s^l = head(fc_norm(pool(norm(z^l))))[c]``: block ``l``'s tokens sent through the model's own
   final norm, pooling, ``fc_norm`` and head — the model's ``forward_head(norm(z^l))``, so the
   pooled token is the class token for ``global_pool="token"``, the patch-token mean for
   ``"avg"``, both heads averaged for distilled DeiT, and ``s^L`` is the model's raw logit.
2. ``G^l = ReLU(∂s^l/∂A^l)``: the gradient of a layer's own score with respect to its own map.
3. ``E^l = mean over heads and query rows of G^l``, keeping the patch-token columns (class,
   register and distillation tokens dropped).
4. ``E = Σ_l E^l`` over *all* blocks with equal weight, reshaped to the patch grid and upsampled
   bilinearly (``align_corners=False``) to the input size.

Choices stated:

* The score is the raw logit, and the pooled token is whatever the model pools (the authors'
  OpenCLIP code averages all tokens before its projection; a timm classifier has its own pooling).
* No per-layer normalisation: raw layer maps are summed, as in the authors' code.
* The final min-max normalisation of the paper is off by default (``min_max=False``), so the map
  keeps its scale and zero level, which metrics comparing positive mass depend on; it is an option.
* Every block is used with equal weight (the authors' CLIP code can start at a later layer).
* Several targets share one forward pass and take one backward pass each, which yields every
  layer's gradient at once (see :mod:`~dave_lightning.baselines._attention_probe`).
* The attention runs unfused for this method only, switched per instance and restored.
* The map is non-negative and channel-free: ``keep_channels=True`` gives ``(B, [K,] 1, H, W)``.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> maps = LeGrad(model).attribute(torch.randn(2, 3, 32, 32), target=torch.tensor([0, 3]))
    >>> maps.shape, bool((maps >= 0).all())
    (torch.Size([2, 32, 32]), True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from dave_lightning.attributor import Attributor
from dave_lightning.baselines._attention_probe import attention_probe
from dave_lightning.errors import BadInputError, UnsupportedModelError

__all__ = ["LeGrad"]


def _find_vision_transformer(model: nn.Module) -> VisionTransformer:
    if isinstance(model, VisionTransformer):
        return model
    found = [module for module in model.modules() if isinstance(module, VisionTransformer)]
    if len(found) != 1:
        raise UnsupportedModelError(
            f"LeGrad needs a timm VisionTransformer (or a module holding exactly one); "
            f"{type(model).__qualname__} holds {len(found)}."
        )
    return found[0]


def _check_vision_transformer(vit: VisionTransformer) -> None:
    problems = []
    if getattr(vit, "attn_pool", None) is not None:
        problems.append("attention pooling (global_pool='map') is not supported")
    blocks = list(getattr(vit, "blocks", ()))
    if not blocks:
        problems.append("the model has no transformer blocks")
    for index, block in enumerate(blocks):
        attention = getattr(block, "attn", None)
        if not isinstance(attention, Attention) or not isinstance(
            getattr(attention, "attn_drop", None), nn.Module
        ):
            problems.append(
                f"block {index} ({type(block).__qualname__}) has attention "
                f"{type(attention).__qualname__}, not timm.layers.Attention with `attn_drop`"
            )
    if problems:
        raise UnsupportedModelError(
            "LeGrad cannot explain this model: " + "; ".join(problems) + ". Supported: timm "
            "VisionTransformer models whose blocks use timm.layers.Attention, with token, average "
            "or max pooling (vit_*, deit_*, deit3_*, DINO ViTs)."
        )


def _min_max(maps: Tensor) -> Tensor:
    """Scale each ``(..., H, W)`` map to [0, 1]; a constant map becomes zeros."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    spread = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / torch.where(spread > 0, spread, torch.ones_like(spread))


class LeGrad(Attributor):
    """LeGrad: layer-wise gradients with respect to the attention maps (see the module docstring).

    Args:
        model: A timm ``VisionTransformer``, or a module holding exactly one whose output is that
            ViT's logits (e.g. a LightningModule; checked at every call).
        min_max: Scale each map to [0, 1] as the paper does for display (default ``False``).
        max_batch_size: Largest number of images per forward pass.
        autocast_dtype: ``None`` (default) computes with autocast off; e.g. ``torch.bfloat16``
            opts in.

    Raises:
        UnsupportedModelError: For a model that is not a supported timm ViT, naming the problem.

    Example:
        >>> import torch
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
        ...                           num_heads=2, num_classes=4, reg_tokens=1)
        >>> maps = LeGrad(model, min_max=True).attribute(torch.randn(1, 3, 32, 32), target=2)
        >>> float(maps.min()), float(maps.max())
        (0.0, 1.0)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        min_max: bool = False,
        max_batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model, max_batch_size=max_batch_size, autocast_dtype=autocast_dtype)
        if not isinstance(min_max, bool):
            raise BadInputError.for_argument("min_max", "a bool", repr(min_max))
        self.min_max = min_max
        self.vit = _find_vision_transformer(model)
        _check_vision_transformer(self.vit)

    def __repr__(self) -> str:
        return f"LeGrad(min_max={self.min_max}, max_batch_size={self.max_batch_size})"

    def _attribute(self, images: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        maps = torch.cat(
            [
                self._chunk_maps(chunk, chunk_targets)
                for chunk, chunk_targets in zip(
                    images.split(self.max_batch_size),
                    targets.split(self.max_batch_size),
                    strict=True,
                )
            ]
        )
        return (_min_max(maps) if self.min_max else maps)[:, :, None]

    def _chunk_maps(self, images: Tensor, targets: Tensor) -> Tensor:
        """``(n, K, H, W)`` LeGrad maps of one forward pass."""
        with attention_probe(self.vit) as record:
            final_scores = self._target_scores(self.model(images), targets)
        try:
            attention, outputs = record.once_per_block()
        except RuntimeError as error:
            raise UnsupportedModelError(
                f"LeGrad cannot follow this model's attention: {error}."
            ) from None
        layer_scores = [self._target_scores(self._head(z), targets) for z in outputs]
        self._check_head(layer_scores[-1], final_scores)
        relevance = _layer_relevance(layer_scores, attention, images.dtype)
        relevance = relevance[..., self.vit.num_prefix_tokens :]
        return self._to_pixels(relevance, images.shape[-2], images.shape[-1]).to(images.dtype)

    def _head(self, tokens: Tensor) -> Tensor:
        """Logits of a block's tokens through the model's final norm, pooling and head."""
        return self.vit.forward_head(self.vit.norm(tokens))

    def _check_head(self, last_layer: Tensor, model_scores: Tensor) -> None:
        tolerance = 1e-3 * (1.0 + float(model_scores.detach().abs().max()))
        if not torch.allclose(last_layer, model_scores.detach(), rtol=1e-3, atol=tolerance):
            raise UnsupportedModelError(
                f"LeGrad: the output of {type(self.model).__qualname__} is not its ViT's "
                "forward_head(norm(tokens)); the per-layer scores would not be the model's logits."
            )

    def _to_pixels(self, relevance: Tensor, height: int, width: int) -> Tensor:
        """``(n, K, P)`` patch relevance to ``(n, K, height, width)`` pixels."""
        embed = self.vit.patch_embed
        patch_h, patch_w = embed.patch_size
        if hasattr(embed, "dynamic_feat_size"):
            grid_h, grid_w = embed.dynamic_feat_size((height, width))
        else:
            grid_h, grid_w = height // patch_h, width // patch_w
        if grid_h * grid_w != relevance.shape[-1]:
            raise UnsupportedModelError(
                f"LeGrad: {relevance.shape[-1]} patch tokens do not form the {grid_h}x{grid_w} "
                f"grid of a {height}x{width} input with {patch_h}x{patch_w} patches."
            )
        grid = relevance.reshape(*relevance.shape[:2], grid_h, grid_w)
        # timm pads a dynamic-size input at the bottom and right: upsample to the padded frame
        pixels = F.interpolate(
            grid, size=(grid_h * patch_h, grid_w * patch_w), mode="bilinear", align_corners=False
        )
        return pixels[..., :height, :width]


def _layer_relevance(scores: list[Tensor], attention: list[Tensor], dtype: torch.dtype) -> Tensor:
    """``(n, K, N)``: ``Σ_l mean_{heads, queries} ReLU(∂s^l/∂A^l)`` per target, in ``dtype``.

    Each ``s^l`` depends on ``A^l`` only (the probe detaches block inputs), so one backward pass of
    ``Σ_l s^l`` gives every ``∂s^l/∂A^l`` at once.
    """
    count = scores[0].shape[1]
    per_target = []
    for k in range(count):
        total = torch.stack([score[:, k].sum() for score in scores]).sum()
        gradients = torch.autograd.grad(total, attention, retain_graph=k + 1 < count)
        layers = [gradient.to(dtype).clamp(min=0).mean(dim=(1, 2)) for gradient in gradients]
        per_target.append(torch.stack(layers).sum(dim=0))
    return torch.stack(per_target, dim=1)
