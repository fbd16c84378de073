"""The warning about maps holding NaN or ±inf, shared by the metric classes (private)."""

from __future__ import annotations

import warnings

from torch import Tensor

__all__ = ["warn_non_finite"]


def warn_non_finite(metric: str, finite: Tensor) -> int:
    """Warn once when some maps of this update hold NaN or ±inf; return how many do."""
    count = int((~finite).sum())
    if count:
        warnings.warn(
            f"{metric}: {count} of {finite.numel()} attribution maps contain NaN or ±inf; they "
            "are excluded from the result and counted in `num_nan`.",
            UserWarning,
            stacklevel=3,
        )
    return count
