"""Combining DAVE's Monte-Carlo maps: the robust (MAD-trimmed) mean of the reference code.

Both medians follow the reference code's convention, ``torch.median``: for an even count the
*lower* of the two middle values, not their mean.

Example:
    >>> import torch
    >>> samples = torch.tensor([1.0, 1.1, 0.9, 1.0, 50.0])
    >>> robust_mean(samples, dim=0)
    tensor(1.)
    >>> lower_median(torch.tensor([[4.0, 1.0, 3.0, 2.0]]), dim=1)  # torch.median's convention
    tensor([2.])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["MAD_SCALE", "OUTLIER_THRESHOLD", "lower_median", "robust_mean"]

MAD_SCALE = 1.4826
"""Makes the median absolute deviation a consistent estimate of a normal standard deviation."""

OUTLIER_THRESHOLD = 2.5
"""Samples farther than this many robust standard deviations from the median are dropped."""

_MAD_FLOOR = 1e-8
_WORKSPACE_ELEMENTS = 1 << 22  # samples reduced at once: the temporaries stay near 100 MB


def _on_numpy(values: Tensor) -> bool:
    """Whether NumPy does the work: CPU float32/float64 (not bf16, which NumPy lacks)."""
    return values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64)


def _lower_median_last(values: Tensor) -> Tensor:
    """The lower median along the last dimension (the ``(n - 1) // 2``-th smallest value).

    On the CPU NumPy's selection (``np.partition``); elsewhere ``torch.median`` itself.
    """
    if _on_numpy(values):
        middle = (values.shape[-1] - 1) // 2
        array = values.detach().numpy()
        return torch.from_numpy(np.partition(array, middle, axis=-1)[..., middle])
    return values.median(dim=-1).values


def lower_median(values: Tensor, dim: int) -> Tensor:
    """The median along ``dim`` with ``torch.median``'s convention (the reference code's).

    For an even count this is the lower of the two middle values, *not* their mean; for an odd
    count the middle value. NaN handling is not specified (DAVE's samples are finite).

    Args:
        values: Any tensor.
        dim: The dimension to reduce.

    Returns:
        ``values`` with ``dim`` reduced.
    """
    return _lower_median_last(values.movedim(dim, -1))


def robust_mean(samples: Tensor, dim: int) -> Tensor:
    """Mean of the samples within ``2.5 · (1.4826 · MAD + 1e-8)`` of the median, per element.

    Exactly the reference code's trimmed mean: the median and the median absolute deviation (MAD)
    are both *lower* medians (``torch.median``: for an even ``N`` the lower of the two middle
    values), the threshold is inclusive, and the kept samples are averaged. At least half of the
    samples always stay in, so the result is never empty. The reduction is fastest when ``dim`` is
    the innermost, contiguous dimension.

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
    """:func:`robust_mean` over the last dimension of a 2-D tensor.

    On the CPU the whole reduction runs in NumPy: measured 4.5x faster than the same steps in
    torch (whose reductions over a short innermost dimension are slow) on 4 M float32 samples,
    N = 50, 2 threads (and 3.8x faster than the former sort-based version on a (2, 3, 224, 224, 50)
    buffer). Elsewhere it runs in torch with ``torch.median``.
    """
    if _on_numpy(values):
        return torch.from_numpy(_robust_mean_numpy(values.detach().numpy()))
    center = _lower_median_last(values)
    deviation = (values - center[..., None]).abs_()
    spread = _lower_median_last(deviation)
    keep = deviation <= (OUTLIER_THRESHOLD * (MAD_SCALE * spread + _MAD_FLOOR))[..., None]
    return values.where(keep, 0.0).sum(-1) / keep.sum(-1)


def _robust_mean_numpy(values: np.ndarray) -> np.ndarray:
    """:func:`_robust_mean_rows` in NumPy, in the dtype of ``values``."""
    middle = (values.shape[-1] - 1) // 2
    center = np.partition(values, middle, axis=-1)[:, middle]
    deviation = np.abs(values - center[:, None])
    spread = np.partition(deviation, middle, axis=-1)[:, middle]
    keep = deviation <= (OUTLIER_THRESHOLD * (MAD_SCALE * spread + _MAD_FLOOR))[:, None]
    total = np.where(keep, values, 0).sum(axis=-1)
    return total / keep.sum(axis=-1).astype(values.dtype)
