"""Shared test helpers: tiny timm ViTs that build in milliseconds, offline."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip cleanly where no GPU is available (select them: ``-m cuda``)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none available here)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def deterministic_algorithms(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for one test, then the previous setting.

    Also sets ``CUBLAS_WORKSPACE_CONFIG`` as ``Trainer(deterministic=True)`` does (cuBLAS refuses
    to run under the flag without it).
    """
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
