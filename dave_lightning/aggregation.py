"""Combining DAVE's Monte-Carlo maps: the robust (MAD-trimmed) mean of the reference code.

Example:
    >>> import torch
    >>> samples = torch.tensor([1.0, 1.1, 0.9, 1.0, 50.0])
    >>> robust_mean(samples, dim=0)
    tensor(1.)
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["MAD_SCALE", "OUTLIER_THRESHOLD", "median", "robust_mean"]

MAD_SCALE = 1.4826
"""Makes the median absolute deviation a consistent estimate of a normal standard deviation."""

OUTLIER_THRESHOLD = 2.5
"""Samples farther than this many robust standard deviations from the median are dropped."""

_MAD_FLOOR = 1e-8


def median(values: Tensor, dim: int) -> Tensor:
    """The statistical median along ``dim``: the mean of the two middle values for even counts.

    (``torch.median`` returns the lower of the two.)

    Args:
        values: Any tensor.
        dim: The dimension to reduce.

    Returns:
        ``values`` with ``dim`` reduced.
    """
    ordered = values.sort(dim=dim).values
    count = values.shape[dim]
    upper = ordered.select(dim, count // 2)
    if count % 2:
        return upper
    return 0.5 * (ordered.select(dim, count // 2 - 1) + upper)


def robust_mean(samples: Tensor, dim: int) -> Tensor:
    """Mean of the samples within ``2.5 · (1.4826 · MAD + 1e-8)`` of the median, per element.

    At least half of the samples always stay in, so the result is never empty.

    Args:
        samples: The Monte-Carlo samples.
        dim: The sample dimension.

    Returns:
        ``samples`` with ``dim`` reduced.
    """
    center = median(samples, dim).unsqueeze(dim)
    deviation = (samples - center).abs()
    spread = median(deviation, dim).unsqueeze(dim)
    keep = deviation <= OUTLIER_THRESHOLD * (MAD_SCALE * spread + _MAD_FLOOR)
    kept_sum = samples.where(keep, 0.0).sum(dim)
    return kept_sum / keep.sum(dim)
