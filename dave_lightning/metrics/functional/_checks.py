"""Input checks and small numeric helpers shared by the functional metrics (private)."""

from __future__ import annotations

from typing import Any, TypeGuard

import torch
from torch import Tensor

from dave_lightning._common import describe
from dave_lightning.errors import BadInputError

__all__ = [
    "check_attribution_maps",
    "describe",
    "finite_maps",
    "is_integer_tensor",
    "positive_mass_ratio",
]


def is_integer_tensor(value: Any) -> TypeGuard[Tensor]:
    """Whether ``value`` is a tensor of an integer dtype (bool excluded)."""
    return (
        isinstance(value, Tensor)
        and not value.is_floating_point()
        and not value.is_complex()
        and value.dtype != torch.bool
    )


def check_attribution_maps(attributions: Any, name: str = "attributions") -> Tensor:
    """Return ``attributions`` when it is a floating ``(B, H, W)`` tensor, else raise."""
    if (
        not isinstance(attributions, Tensor)
        or attributions.dim() != 3
        or not attributions.is_floating_point()
    ):
        raise BadInputError.for_argument(
            name, "a floating-point tensor of shape (B, H, W)", describe(attributions)
        )
    return attributions


def finite_maps(attributions: Tensor) -> Tensor:
    """``(B,)`` bool: which maps hold only finite values (no NaN, no ±inf)."""
    return torch.isfinite(attributions).flatten(1).all(dim=1)


def positive_mass_ratio(inside: Tensor, total: Tensor) -> Tensor:
    """``inside / total`` where ``total > 0``, and 0 where there is no positive mass."""
    has_mass = total > 0
    safe_total = torch.where(has_mass, total, torch.ones_like(total))
    return torch.where(has_mass, inside / safe_total, torch.zeros_like(inside))
