"""The fraction axis of deletion curves and their normalised area under the curve."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dave_lightning.errors import BadInputError
from dave_lightning.metrics.functional._checks import describe

__all__ = ["deletion_auc", "deletion_fractions", "normalize_curves"]


def deletion_fractions(
    steps: int,
    max_fraction: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """The nominal removed fractions ``k / steps · max_fraction`` for ``k = 0..steps``.

    Args:
        steps: Number of removal steps.
        max_fraction: Fraction removed at the last step.
        dtype: Floating dtype of the result (default: the default dtype).
        device: Device of the result.

    Returns:
        ``(steps + 1,)`` evenly spaced fractions from 0 to ``max_fraction``.

    Example:
        >>> deletion_fractions(4, 0.5)
        tensor([0.0000, 0.1250, 0.2500, 0.3750, 0.5000])
    """
    exact = torch.arange(steps + 1, dtype=torch.float64) / steps * max_fraction
    return exact.to(dtype=dtype or torch.get_default_dtype(), device=device)


def deletion_auc(curves: Tensor, fractions: Tensor, normalize: bool = False) -> Tensor:
    """Trapezoid area under curves divided by the span of the fraction axis.

    With fractions from 0 to ``max_fraction`` this is the area divided by ``max_fraction``, so
    the AUC lies on the score's scale: a constant curve ``c`` has AUC ``c``.

    With ``normalize=True`` each curve is first divided by its own first point, the unperturbed
    score: the AUC of ``score(t) / score(0)``, which is 1 for a curve that never drops and does
    not change when the model's scores are all scaled by one factor (e.g. logits under a
    temperature). It is NaN where the unperturbed score is not positive.

    Args:
        curves: ``(..., T)`` scores, one curve per leading index.
        fractions: ``(T,)`` increasing fractions, ``T >= 2``.
        normalize: Divide each curve by its unperturbed score first.

    Returns:
        ``(...)`` areas on the score's scale (or, normalised, on the scale of ``score(0)``).

    Raises:
        BadInputError: If the shapes do not match or ``fractions`` has fewer than two points.

    Example:
        >>> deletion_auc(torch.tensor([1.0, 0.5, 0.0]), torch.tensor([0.0, 0.45, 0.9]))
        tensor(0.5000)
        >>> deletion_auc(torch.tensor([0.4, 0.2, 0.0]), torch.tensor([0.0, 0.45, 0.9]),
        ...              normalize=True)
        tensor(0.5000)
    """
    if not isinstance(fractions, Tensor) or fractions.dim() != 1 or fractions.shape[0] < 2:
        raise BadInputError.for_argument(
            "fractions", "a 1-D tensor of at least 2 points", describe(fractions)
        )
    if not isinstance(curves, Tensor) or curves.dim() < 1 or curves.shape[-1] != fractions.shape[0]:
        raise BadInputError.for_argument(
            "curves", f"a tensor whose last dimension is {fractions.shape[0]}", describe(curves)
        )
    axis = fractions.to(device=curves.device, dtype=curves.dtype)
    if normalize:
        curves = normalize_curves(curves)
    return torch.trapezoid(curves, axis, dim=-1) / (axis[-1] - axis[0])


def normalize_curves(curves: Tensor) -> Tensor:
    """Each curve ``(..., T)`` divided by its first point, the unperturbed score (NaN if <= 0).

    Example:
        >>> normalize_curves(torch.tensor([[0.5, 0.25, 0.0], [-1.0, 0.0, 1.0]]))
        tensor([[1.0000, 0.5000, 0.0000],
                [   nan,    nan,    nan]])
    """
    first = curves[..., :1]
    return torch.where(
        first > 0, curves / first.clamp_min(torch.finfo(curves.dtype).tiny), math.nan
    )
