"""Fixtures and collection hooks shared by every test (plain helpers: ``tests/helpers.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import timm.models.vision_transformer as timm_vit
import torch


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
def checkpointed_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the checkpointed block sequences timm runs (so no test passes vacuously)."""
    calls: list[int] = []
    original: Callable[..., Any] = timm_vit.checkpoint_seq

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(timm_vit, "checkpoint_seq", counting)
    return calls
