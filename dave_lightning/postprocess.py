"""Display post-processing of attribution maps, as in the DAVE reference code.

ReLU, a 50/50 blend with an 11×11 Gaussian blur (σ = 7), a 5×5 bilateral filter (σ_space 0.5,
σ_range 0.05), then division by the maximum. For display only: metrics use the raw signed maps.

Where this differs from the reference display pipeline:

* **Scale-free.** The blended map is divided by its maximum *before* the bilateral filter, so
  σ_range = 0.05 is measured on a [0, 1] scale and the result is the same for a map and for any
  positive multiple of it. The reference filters the raw map, whose scale depends on the model and
  the method, so there σ_range = 0.05 may smooth almost nothing (large values) or act as a plain
  Gaussian (tiny values).
* **Borders reflected.** Both filters reflect the map at its borders (``dcb|abcd|cba``, OpenCV's
  ``REFLECT_101``, torch's ``"reflect"``); the reference pads with zeros, which darkens evidence
  within a few pixels of the border.

The result is divided by its maximum again at the end, as in the reference. An all-zero map stays
zero. The figures in :mod:`dave_lightning.viz` clip outliers first (a high percentile, as
Captum's ``outlier_perc``), then call this.

Example:
    >>> import torch
    >>> shown = postprocess_for_display(torch.randn(2, 32, 32))
    >>> shown.shape, float(shown.min()) >= 0.0, float(shown.amax(dim=(1, 2)).max())
    (torch.Size([2, 32, 32]), True, 1.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dave_lightning._common import gaussian_kernel_1d
from dave_lightning.errors import BadInputError

__all__ = ["bilateral_filter", "gaussian_blur", "postprocess_for_display"]


def _as_batch(maps: Tensor, name: str) -> Tensor:
    if not isinstance(maps, Tensor) or maps.dim() not in (2, 3) or not maps.is_floating_point():
        received = f"shape {tuple(maps.shape)}" if isinstance(maps, Tensor) else type(maps).__name__
        raise BadInputError.for_argument(name, "a floating (H, W) or (B, H, W) tensor", received)
    return maps if maps.dim() == 3 else maps[None]


def _check_fits(maps: Tensor, size: int) -> None:
    """Reflected borders need maps larger than half the filter window."""
    if min(maps.shape[-2:]) <= size // 2:
        raise BadInputError.for_argument(
            "maps",
            f"maps larger than {size // 2} pixels on each side for a {size}x{size} filter",
            f"shape {tuple(maps.shape)}",
        )


def gaussian_blur(maps: Tensor, size: int = 11, sigma: float = 7.0) -> Tensor:
    """Separable Gaussian blur with reflected borders.

    Args:
        maps: ``(B, H, W)`` or ``(H, W)``.
        size: Odd kernel size.
        sigma: Standard deviation in pixels.

    Returns:
        The blurred maps, same shape.
    """
    batch = _as_batch(maps, "maps")
    _check_fits(maps, size)
    kernel = gaussian_kernel_1d(size, sigma, batch)
    pad = size // 2
    x = F.pad(batch[:, None], (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, size))
    x = F.conv2d(x, kernel.view(1, 1, size, 1))
    return x[:, 0].reshape(maps.shape)


def bilateral_filter(
    maps: Tensor, size: int = 5, sigma_space: float = 0.5, sigma_range: float = 0.05
) -> Tensor:
    """Bilateral filter: neighbours weighted by spatial distance and by value difference.

    Args:
        maps: ``(B, H, W)`` or ``(H, W)``.
        size: Odd window size.
        sigma_space: Spatial standard deviation in pixels.
        sigma_range: Value standard deviation.

    Returns:
        The filtered maps, same shape.
    """
    batch = _as_batch(maps, "maps")
    _check_fits(maps, size)
    pad = size // 2
    height, width = batch.shape[-2:]
    padded = F.pad(batch[:, None], (pad, pad, pad, pad), mode="reflect")
    windows = F.unfold(padded, size).view(batch.shape[0], size * size, height, width)
    offsets = torch.arange(size, dtype=batch.dtype, device=batch.device) - pad
    distance2 = (offsets[:, None] ** 2 + offsets[None, :] ** 2).reshape(1, -1, 1, 1)
    weights = torch.exp(
        -distance2 / (2 * sigma_space**2) - (windows - batch[:, None]) ** 2 / (2 * sigma_range**2)
    )
    return ((weights * windows).sum(1) / weights.sum(1)).reshape(maps.shape)


def _divide_by_max(maps: Tensor) -> Tensor:
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)


def postprocess_for_display(maps: Tensor) -> Tensor:
    """The reference display pipeline: ReLU, Gaussian blend, bilateral filter, divide by max.

    Unlike the reference, the map is divided by its maximum before the bilateral filter (so the
    result does not depend on the map's scale) and borders are reflected instead of zero-padded;
    see the module documentation.

    Args:
        maps: Signed attributions ``(B, H, W)`` or ``(H, W)``.

    Returns:
        Maps in [0, 1] with maximum 1 (or all zero), same shape.
    """
    positive = _as_batch(maps, "maps").clamp_min(0.0)
    blended = 0.5 * positive + 0.5 * gaussian_blur(positive)
    filtered = bilateral_filter(_divide_by_max(blended))
    return _divide_by_max(filtered).reshape(maps.shape)
