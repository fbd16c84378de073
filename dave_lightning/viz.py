"""Heatmaps, overlays and figures for attribution maps (matplotlib with the Agg backend).

Images are shown in display space: either given in [0, 1], or mapped back from the model's
normalised space with :func:`to_display` and the ``mean``/``std`` the model was trained with.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 32, 32)
    >>> maps = torch.randn(2, 32, 32)
    >>> blended = overlay(images, maps)
    >>> blended.shape, float(blended.min()) >= 0.0, float(blended.max()) <= 1.0
    (torch.Size([2, 3, 32, 32]), True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import torch
from torch import Tensor

from dave_lightning.postprocess import postprocess_for_display

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "attribution_figure",
    "colorize",
    "deletion_curves_figure",
    "metric_history_figure",
    "overlay",
    "sensitivity_figure",
    "to_display",
]


def _new_figure(**options: Any) -> Figure:
    """A figure outside pyplot: the user's backend and pyplot's figure list stay untouched.

    It renders with Agg when saved or logged, and needs no ``pyplot.close``.
    """
    from matplotlib.figure import Figure

    return Figure(**options)


def to_display(
    images: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> Tensor:
    """Map images from the model's normalised space to [0, 1] RGB for display.

    Args:
        images: ``(B, C, H, W)``.
        mean: Per-channel mean used for normalisation; with ``std`` undoes it.
        std: Per-channel standard deviation used for normalisation.

    Returns:
        ``(B, 3, H, W)`` float in [0, 1]. Without ``mean``/``std`` each image is min-max scaled;
        one-channel images are repeated to RGB.
    """
    images = images.detach().float().cpu()
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    else:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        images = (images - low) / (high - low).clamp_min(1e-12)
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return images[:, :3].clamp(0.0, 1.0)


def colorize(maps: Tensor, cmap: str = "jet") -> Tensor:
    """Colour ``(B, H, W)`` values in [0, 1] with a matplotlib colormap: ``(B, 3, H, W)``."""
    colormap = matplotlib.colormaps[cmap]
    rgba = colormap(maps.detach().float().cpu().clamp(0.0, 1.0).numpy())
    return torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).float()


def overlay(images: Tensor, maps: Tensor, alpha: float = 0.8, cmap: str = "inferno") -> Tensor:
    """Blend display images with their attribution heatmaps.

    The maps go through :func:`~dave_lightning.postprocess_for_display` (positive evidence,
    smoothed, scaled to [0, 1]); each pixel's heat also sets its opacity, so the image stays
    visible where there is no evidence and the strongest evidence is drawn at ``alpha``.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1] (see :func:`to_display`).
        maps: Signed attributions ``(B, H, W)``.
        alpha: Opacity of the strongest evidence.
        cmap: A matplotlib colormap name.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], ready for ``SummaryWriter.add_images``.
    """
    heat = postprocess_for_display(maps.detach().float().cpu())
    weight = alpha * heat[:, None].sqrt()  # sqrt: faint evidence stays visible
    blended = (1 - weight) * images.detach().float().cpu() + weight * colorize(heat, cmap)
    return blended.clamp(0.0, 1.0)


def _mosaic(rows: list[list[Tensor]], pad: int) -> Tensor:
    """``(3, H', W')`` tiles of equal size laid out row by row on a white background."""
    height, width = rows[0][0].shape[-2:]
    count_rows, count_cols = len(rows), len(rows[0])
    canvas = torch.ones(3, count_rows * (height + pad) + pad, count_cols * (width + pad) + pad)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            canvas[:, top : top + height, left : left + width] = tile
    return canvas


def attribution_figure(
    images: Tensor,
    maps: Mapping[str, Tensor],
    titles: Sequence[str] | None = None,
    cell_inches: float = 1.8,
) -> Figure:
    """One row per image: the image, then one overlay per method (drawn as a single mosaic).

    Args:
        images: ``(B, 3, H, W)`` display images in [0, 1].
        maps: Method name to signed maps ``(B, H, W)``.
        titles: Optional row titles, e.g. the class and the prediction.
        cell_inches: Size of one panel.

    Returns:
        A matplotlib figure (outside pyplot: no need to close it).
    """
    images = images.detach().float().cpu()
    overlays = [overlay(images, value) for value in maps.values()]
    rows = [[images[b], *(blended[b] for blended in overlays)] for b in range(images.shape[0])]
    height, width = images.shape[-2:]
    pad = max(2, width // 16)
    mosaic = _mosaic(rows, pad)
    count_rows, count_cols = len(rows), len(rows[0])
    figure = _new_figure(figsize=(cell_inches * count_cols, cell_inches * count_rows + 0.3))
    axis = figure.add_axes((0.0, 0.0, 1.0, 1.0 - 0.3 / figure.get_figheight()))
    axis.imshow(mosaic.permute(1, 2, 0).numpy(), interpolation="nearest")
    axis.set_axis_off()
    for c, name in enumerate(["image", *maps]):
        axis.text(
            pad + c * (width + pad) + width / 2,
            -pad / 2,
            name,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for r, title in enumerate(titles or []):
        axis.text(
            pad + 1,
            pad + r * (height + pad) + 1,
            title,
            ha="left",
            va="top",
            fontsize=7,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
        )
    return figure


def _single_panel() -> tuple[Figure, Any]:
    """A 5 x 3.5 inch figure with one axis and fixed margins.

    Fixed margins instead of ``tight_layout``: the per-epoch figures always carry the same
    labels, and the layout pass cost about 0.1 s per figure, each evaluation.
    """
    figure = _new_figure(figsize=(5, 3.5))
    axis = figure.subplots()
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.91)
    return figure, axis


def deletion_curves_figure(
    fractions: Tensor,
    curves: Mapping[str, Tensor],
    reference: Tensor | None = None,
    title: str = "pixel deletion",
) -> Figure:
    """Mean deletion curve of each method, with the random-order reference dashed.

    Args:
        fractions: ``(S,)`` removed fractions.
        curves: Method name to its mean curve ``(S,)``.
        reference: The curve of removing pixels in random order, or ``None``.
        title: The chart title (say which direction is better).

    Returns:
        A matplotlib figure.
    """
    figure, axis = _single_panel()
    x = fractions.cpu().numpy()
    for name, curve in curves.items():
        axis.plot(x, curve.detach().cpu().numpy(), "-", label=name)
    if reference is not None:
        axis.plot(x, reference.detach().cpu().numpy(), "--", color="grey", label="random order")
    axis.set_xlabel("fraction of pixels removed")
    axis.set_ylabel("target score")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def sensitivity_figure(curve: Any) -> Figure:
    """DAVE's noise calibration: retained target score against the noise level.

    Args:
        curve: A :class:`~dave_lightning.calibration.SensitivityCurve`.

    Returns:
        A matplotlib figure with the measured curve, its monotone envelope, the threshold the
        envelope must stay above, and the chosen level.
    """
    figure, axis = _single_panel()
    levels = curve.levels.numpy()
    axis.plot(levels, curve.retained.numpy(), "o-", label="retained score (mean)", markersize=3)
    axis.plot(levels, curve.envelope.numpy(), "-", color="black", alpha=0.5, label="envelope")
    axis.axhline(curve.threshold, color="tab:red", linestyle="--", label="threshold")
    axis.axvline(curve.noise_alpha, color="tab:green", label=f"noise_alpha = {curve.noise_alpha:g}")
    axis.set_xlabel("noise level t")
    axis.set_ylabel(f"retained {curve.statistic}")
    axis.set_ylim(0, 1.05)
    axis.set_title(f"DAVE noise calibration ({curve.num_used} images)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def metric_history_figure(
    history: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """One panel per metric, one line per method, over epochs.

    Args:
        history: ``{metric: {method: [(epoch, value), ...]}}``.
        titles: Optional panel titles per metric (e.g. saying which direction is better).

    Returns:
        A matplotlib figure.
    """
    count = max(1, len(history))
    figure = _new_figure(figsize=(4.2 * count, 3.2))
    axes = figure.subplots(1, count, squeeze=False)
    for axis, (metric, lines) in zip(axes[0], history.items(), strict=False):
        for method, points in lines.items():
            epochs = [epoch for epoch, _ in points]
            values = [value for _, value in points]
            axis.plot(epochs, values, "o-", label=method, markersize=3)
        axis.set_title((titles or {}).get(metric, metric), fontsize=9)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure
