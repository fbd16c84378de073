"""Shared test helpers: tiny timm ViTs that build in milliseconds, offline."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer


def tiny_vit(
    *,
    img_size: int | tuple[int, int] = 32,
    num_classes: int = 5,
    fused: bool | None = None,
    **kwargs: Any,
) -> VisionTransformer:
    """A test-sized ViT: 8-pixel patches, width 32, two blocks of two heads."""
    options: dict[str, Any] = dict(
        img_size=img_size,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=num_classes,
    )
    options.update(kwargs)
    model = VisionTransformer(**options)
    if fused is not None:
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
    return model


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
