"""Combining DAVE's Monte-Carlo maps: the robust (MAD-trimmed) mean of the reference code.

Example:
    >>> import torch
    >>> samples = torch.tensor([1.0, 1.1, 0.9, 1.0, 50.0])
    >>> robust_mean(samples, dim=0)
    tensor(1.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["MAD_SCALE", "OUTLIER_THRESHOLD", "median", "robust_mean"]

MAD_SCALE = 1.4826
"""Makes the median absolute deviation a consistent estimate of a normal standard deviation."""

OUTLIER_THRESHOLD = 2.5
"""Samples farther than this many robust standard deviations from the median are dropped."""

_MAD_FLOOR = 1e-8
_WORKSPACE_ELEMENTS = 1 << 22  # samples reduced at once: the temporaries stay near 100 MB


def _sorted_last(values: Tensor) -> Tensor:
    """``values`` sorted along the last dimension.

    On the CPU, NumPy's values-only SIMD sort is an order of magnitude faster than ``torch.sort``
    (which always builds indices too); elsewhere ``torch.sort`` is used.
    """
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(values.detach().numpy(), axis=-1))
    return values.sort(dim=-1).values


def _middle(ordered: Tensor) -> Tensor:
    """The median of values already sorted along the last dimension."""
    count = ordered.shape[-1]
    return 0.5 * (ordered[..., (count - 1) // 2] + ordered[..., count // 2])


def median(values: Tensor, dim: int) -> Tensor:
    """The statistical median along ``dim``: the mean of the two middle values for even counts.

    (``torch.median`` returns the lower of the two.)

    Args:
        values: Any tensor.
        dim: The dimension to reduce.

    Returns:
        ``values`` with ``dim`` reduced.
    """
    return _middle(_sorted_last(values.movedim(dim, -1)))


def robust_mean(samples: Tensor, dim: int) -> Tensor:
    """Mean of the samples within ``2.5 · (1.4826 · MAD + 1e-8)`` of the median, per element.

    At least half of the samples always stay in, so the result is never empty. The reduction is
    fastest when ``dim`` is the innermost, contiguous dimension.

    Args:
        samples: The Monte-Carlo samples.
        dim: The sample dimension.

    Returns:
        ``samples`` with ``dim`` reduced.
    """
    values = samples.movedim(dim, -1)
    rows = values.reshape(-1, values.shape[-1])
    step = max(1, _WORKSPACE_ELEMENTS // max(1, rows.shape[-1]))
    if rows.shape[0] <= step:
        return _robust_mean_rows(rows).reshape(values.shape[:-1])
    out = rows.new_empty(rows.shape[0])
    for start in range(0, rows.shape[0], step):  # bounds the temporaries, not the result
        out[start : start + step] = _robust_mean_rows(rows[start : start + step])
    return out.reshape(values.shape[:-1])


def _robust_mean_rows(values: Tensor) -> Tensor:
    """:func:`robust_mean` over the last dimension of a 2-D tensor."""
    center = median(values, dim=-1)
    deviation = (values - center[..., None]).abs()
    spread = median(deviation, dim=-1)
    keep = deviation <= (OUTLIER_THRESHOLD * (MAD_SCALE * spread + _MAD_FLOOR))[..., None]
    return values.where(keep, 0.0).sum(-1) / keep.sum(-1)
