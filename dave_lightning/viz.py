"""Paper-style figures of attribution maps, deletion curves and scores over epochs.

Every figure is a :class:`matplotlib.figure.Figure` on its own Agg canvas: pyplot's global state
and the user's backend are never touched, and a figure is freed when it goes out of scope.

Maps are drawn as in the DAVE paper: the map alone with a perceptual colormap (:data:`CMAP`,
inferno on black) beside the image, and an overlay on a greyscale copy of the image. Each map is
divided by a high percentile of its values (:data:`OUTLIER_PERCENTILE`, as Captum's
``outlier_perc``) and clipped, so one hot outlier does not wash out the rest; a colour bar gives
the scale. Signed maps (``signed=True``) use the diverging :data:`SIGNED_CMAP` centred at 0.

Images are shown in display space: either given in [0, 1], or mapped back from the model's
normalised space with :func:`to_display` and the ``mean``/``std`` the model was trained with.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 32, 32)
    >>> maps = torch.randn(2, 32, 32)
    >>> blended = overlay(images, maps)
    >>> blended.shape, float(blended.min()) >= 0.0, float(blended.max()) <= 1.0
    (torch.Size([2, 3, 32, 32]), True, True)
    >>> figure = attribution_figure(images, {"dave": maps})
    >>> [text.get_text() for text in figure.axes[0].texts]
    ['image', 'dave', 'dave on image']
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from dave_lightning.postprocess import postprocess_for_display

__all__ = [
    "CMAP",
    "OUTLIER_PERCENTILE",
    "REFERENCE",
    "SIGNED_CMAP",
    "attribution_figure",
    "colorize",
    "deletion_curves_figure",
    "display_maps",
    "greyscale",
    "metric_history_figure",
    "new_figure",
    "overlay",
    "overlay_from_display",
    "robust_normalize",
    "sensitivity_figure",
    "to_display",
]

CMAP = "inferno"
"""The colormap of every (positive) map the package draws: perceptual, black at zero."""
SIGNED_CMAP = "RdBu_r"
"""The diverging colormap of signed maps: blue negative, white zero, red positive."""
OUTLIER_PERCENTILE = 99.5
"""Maps are divided by this percentile of their absolute values, then clipped to [0, 1]."""
REFERENCE = "random_order"
"""The name of the random-order deletion reference; drawn dashed grey in every chart."""
_BOX_COLOUR = "#00e5ff"


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no backend switch)."""
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


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


def greyscale(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` display images as grey RGB (ITU-R 601 luma)."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    luma = (images.detach().float().cpu()[:, :3] * weights).sum(dim=1, keepdim=True)
    return luma.repeat(1, 3, 1, 1)


def robust_normalize(
    maps: Tensor, percentile: float = OUTLIER_PERCENTILE, signed: bool = False
) -> Tensor:
    """Divide each map by a high percentile of its absolute values and clip.

    As Captum's ``outlier_perc``: the few values above the percentile saturate instead of
    setting the scale. A map whose percentile is 0 (mostly zero) is divided by its maximum.

    Args:
        maps: ``(B, H, W)``.
        percentile: In (0, 100].
        signed: Keep the sign (result in [-1, 1]); else negative values become 0 ([0, 1]).

    Returns:
        The scaled maps, same shape.

    Example:
        >>> maps = torch.ones(1, 20, 20)
        >>> maps[0, 0, 0] = 1000.0  # one hot outlier
        >>> robust_normalize(maps)[0, 5, 5].item()  # the rest stays at full scale
        1.0
    """
    values = maps.detach().float().cpu()
    magnitude = values.abs().flatten(1)
    scale = torch.quantile(magnitude, percentile / 100.0, dim=1)
    scale = torch.where(scale > 0, scale, magnitude.amax(dim=1)).clamp_min(1e-30)
    scaled = values / scale.view(-1, 1, 1)
    return scaled.clamp(-1.0, 1.0) if signed else scaled.clamp(0.0, 1.0)


def display_maps(maps: Tensor, signed: bool = False) -> Tensor:
    """What the figures draw of signed attribution maps ``(B, H, W)``.

    Positive evidence (default): the map scaled and clipped by :func:`robust_normalize` (so an
    outlier is cut before the smoothing can spread it), then
    :func:`~dave_lightning.postprocess_for_display` (the reference display smoothing, divided by
    its maximum), in [0, 1]. ``signed``: the raw map scaled by :func:`robust_normalize` with its
    sign, in [-1, 1].
    """
    values = maps.detach().float().cpu()
    if signed:
        return robust_normalize(values, signed=True)
    return postprocess_for_display(robust_normalize(values))


def colorize(maps: Tensor, cmap: str = CMAP, signed: bool = False) -> Tensor:
    """Colour ``(B, H, W)`` values in [0, 1] (or [-1, 1] when ``signed``): ``(B, 3, H, W)``."""
    values = maps.detach().float().cpu()
    values = (values.clamp(-1.0, 1.0) + 1) / 2 if signed else values.clamp(0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](values.numpy())
    return torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).float()


def overlay(
    images: Tensor,
    maps: Tensor,
    alpha: float = 0.65,
    cmap: str | None = None,
    signed: bool = False,
) -> Tensor:
    """The map, coloured, blended at a fixed opacity over a greyscale copy of the image.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1] (see :func:`to_display`).
        maps: Signed attributions ``(B, H, W)`` (drawn as :func:`display_maps` says).
        alpha: Opacity of the coloured map.
        cmap: A matplotlib colormap name (default :data:`CMAP`, or :data:`SIGNED_CMAP`).
        signed: Draw both signs with the diverging colormap.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], ready for ``SummaryWriter.add_images``.
    """
    colour_map = cmap or (SIGNED_CMAP if signed else CMAP)
    return overlay_from_display(
        greyscale(images), display_maps(maps, signed), colour_map, signed, alpha
    )


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


def _draw_boxes(axis: Any, boxes: Tensor | None, left: int, top: int) -> None:
    """Outline ``(n, 4)`` boxes ``x1, y1, x2, y2`` of a tile whose corner is at ``left, top``."""
    if boxes is None:
        return
    for x1, y1, x2, y2 in boxes.reshape(-1, 4).tolist():
        corner = (left + x1 - 0.5, top + y1 - 0.5)
        axis.add_patch(
            Rectangle(corner, x2 - x1, y2 - y1, fill=False, edgecolor=_BOX_COLOUR, linewidth=1)
        )


def _column_names(maps: Mapping[str, Tensor]) -> list[str]:
    return ["image", *(f"{name}{suffix}" for name in maps for suffix in ("", " on image"))]


def attribution_figure(
    images: Tensor,
    maps: Mapping[str, Tensor],
    titles: Sequence[str] | None = None,
    cell_inches: float = 1.8,
    boxes: Sequence[Tensor] | None = None,
    signed: bool = False,
) -> Figure:
    """One row per image: the image, then per method its map alone and its overlay.

    The map alone is drawn with :data:`CMAP` on black (or :data:`SIGNED_CMAP` centred at 0 with
    ``signed``), the overlay over a greyscale copy of the image; both are scaled by
    :func:`display_maps`, which the colour bar on the right shows. The panels are one mosaic
    (one image to draw, which keeps the per-epoch figures cheap).

    Args:
        images: ``(B, 3, H, W)`` display images in [0, 1].
        maps: Method name to signed maps ``(B, H, W)``.
        titles: Optional row titles, e.g. the class and the prediction.
        cell_inches: Size of one panel.
        boxes: Optional per image a ``(n_i, 4)`` tensor of object boxes ``x1, y1, x2, y2``
            (pixels, end-exclusive), outlined on every panel.
        signed: Show both signs with a diverging colormap.

    Returns:
        A :class:`matplotlib.figure.Figure` (save it with ``figure.savefig``).
    """
    images = images.detach().float().cpu()
    cmap = SIGNED_CMAP if signed else CMAP
    grey = greyscale(images)
    tiles: list[Tensor] = []
    for value in maps.values():
        shown = display_maps(value, signed)
        tiles += [colorize(shown, cmap, signed), overlay_from_display(grey, shown, cmap, signed)]
    rows = [[images[b], *(tile[b] for tile in tiles)] for b in range(images.shape[0])]
    height, width = images.shape[-2:]
    pad = max(2, width // 16)
    top, bar = 0.3, 0.85
    figure = new_figure(cell_inches * len(rows[0]) + bar, cell_inches * len(rows) + top)
    size_w, size_h = figure.get_figwidth(), figure.get_figheight()
    axis = figure.add_axes((0.0, 0.0, (size_w - bar) / size_w, (size_h - top) / size_h))
    axis.imshow(_mosaic(rows, pad).permute(1, 2, 0).numpy(), interpolation="nearest")
    axis.set_axis_off()
    for c, name in enumerate(_column_names(maps)):
        axis.text(pad + c * (width + pad) + width / 2, -pad / 2, name, ha="center", fontsize=8)
    for r in range(len(rows)):
        row_top = pad + r * (height + pad)
        for c in range(len(rows[0])):
            _draw_boxes(axis, None if boxes is None else boxes[r], pad + c * (width + pad), row_top)
        if titles is not None and r < len(titles):
            axis.text(
                pad + 1,
                row_top + 1,
                titles[r],
                ha="left",
                va="top",
                fontsize=7,
                color="white",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
            )
    _colour_bar(figure, cmap, -1.0 if signed else 0.0, bar, top)
    return figure


def overlay_from_display(
    grey: Tensor, heat: Tensor, cmap: str, signed: bool, alpha: float = 0.65
) -> Tensor:
    """Blend already scaled maps (:func:`display_maps`) over greyscale images."""
    return ((1 - alpha) * grey + alpha * colorize(heat, cmap, signed)).clamp(0.0, 1.0)


def _colour_bar(figure: Figure, cmap: str, low: float, bar: float, top: float) -> None:
    width, height = figure.get_figwidth(), figure.get_figheight()
    axis = figure.add_axes(
        ((width - bar + 0.12) / width, 0.08, 0.12 / width, (height - top) / height - 0.12)
    )
    mappable = ScalarMappable(Normalize(low, 1.0), matplotlib.colormaps[cmap])
    colour_bar = figure.colorbar(mappable, cax=axis)
    colour_bar.set_label(
        f"attribution / {OUTLIER_PERCENTILE:g}th percentile of |map| (clipped)", fontsize=7
    )
    colour_bar.ax.tick_params(labelsize=6)


def _single_panel() -> tuple[Figure, Any]:
    """A 5.4 x 3.6 inch figure with one axis and fixed margins (room for the y-label)."""
    figure = new_figure(5.4, 3.6)
    axis = figure.add_subplot()
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.86)
    return figure, axis


def _label(name: str, aucs: Mapping[str, float] | None) -> str:
    value = (aucs or {}).get(name)
    shown = "random order" if name == REFERENCE else name
    return shown if value is None or value != value else f"{shown} (AUC {value:.3f})"


def _limits(
    values: Sequence[float], normalized: bool, min_span: float = 0.2
) -> tuple[float, float]:
    """[0, 1.05] (or up to the data) for normalised scores; else at least ``min_span`` wide."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return (0.0, 1.05)
    low, high = min(finite), max(finite)
    if normalized:
        return (min(0.0, low - 0.05), max(1.05, high + 0.05))
    middle, span = (low + high) / 2, max(high - low, min_span)
    return (middle - 0.55 * span, middle + 0.55 * span)


def deletion_curves_figure(
    fractions: Tensor,
    curves: Mapping[str, Tensor],
    reference: Tensor | None = None,
    title: str = "pixel deletion",
    aucs: Mapping[str, float] | None = None,
    normalized: bool = True,
) -> Figure:
    """Mean deletion curve of each method, with the random-order reference dashed grey.

    Args:
        fractions: ``(S,)`` removed fractions.
        curves: Method name to its mean curve ``(S,)``.
        reference: The curve of removing pixels in random order, or ``None``.
        title: The chart title (say which direction is better).
        aucs: Optional AUC per method (and ``"random_order"``), shown in the legend.
        normalized: The curves are scores divided by the unperturbed score: the y-axis spans
            [0, 1] (or more when the data does); else it spans at least 0.2.

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    figure, axis = _single_panel()
    x = fractions.detach().cpu().numpy()
    drawn: list[float] = []
    for name, curve in curves.items():
        values = curve.detach().float().cpu()
        axis.plot(x, values.numpy(), "-", label=_label(name, aucs))
        drawn += values.tolist()
    if reference is not None:
        values = reference.detach().float().cpu()
        axis.plot(x, values.numpy(), "--", color="grey", label=_label(REFERENCE, aucs))
        drawn += values.tolist()
    axis.set_ylim(*_limits(drawn, normalized))
    axis.set_xlim(float(x[0]), float(x[-1]))
    axis.set_xlabel("fraction of pixels removed")
    axis.set_ylabel("score / unperturbed score" if normalized else "target score")
    axis.set_title(textwrap.fill(title, 64), fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def sensitivity_figure(curve: Any, used: float | None = None) -> Figure:
    """DAVE's noise calibration: retained target score against the noise level.

    Args:
        curve: A :class:`~dave_lightning.calibration.SensitivityCurve`.
        used: The level DAVE attributes with when it differs from the curve's choice (a level
            fixed at an earlier calibration); drawn as a second vertical line.

    Returns:
        A figure with the measured curve, its monotone envelope, the threshold the envelope must
        stay above, the level this curve chooses and, when given, the level in use.
    """
    figure, axis = _single_panel()
    levels = curve.levels.numpy()
    axis.plot(levels, curve.retained.numpy(), "o-", label="retained score (mean)", markersize=3)
    axis.plot(levels, curve.envelope.numpy(), "-", color="black", alpha=0.5, label="envelope")
    axis.axhline(curve.threshold, color="tab:red", linestyle="--", label="threshold")
    axis.axvline(curve.noise_alpha, color="tab:green", label=f"chosen now: {curve.noise_alpha:g}")
    if used is not None and abs(used - curve.noise_alpha) > 1e-12:
        axis.axvline(used, color="tab:purple", linestyle=":", label=f"in use (fixed): {used:g}")
    axis.set_xlabel("noise level t")
    axis.set_ylabel(f"retained {curve.statistic}")
    axis.set_ylim(0, 1.05)
    axis.set_title(f"DAVE noise calibration ({curve.num_used} images)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def metric_history_figure(
    history: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    titles: Mapping[str, str] | None = None,
    limits: Mapping[str, tuple[float, float]] | None = None,
) -> Figure:
    """One panel per metric, one line per method, over epochs.

    A line named :data:`REFERENCE` (the random-order deletion reference) is drawn dashed grey.

    Args:
        history: ``{metric: {method: [(epoch, value), ...]}}``.
        titles: Optional panel titles per metric (e.g. saying which direction is better).
        limits: Optional y-limits per metric (e.g. ``(0, 1.05)`` for scores in [0, 1]).

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    count = max(1, len(history))
    figure = new_figure(4.2 * count, 3.3)
    axes = figure.subplots(1, count, squeeze=False)[0]
    for axis, (metric, lines) in zip(axes, history.items(), strict=False):
        for method, points in lines.items():
            epochs = [epoch for epoch, _ in points]
            values = [value for _, value in points]
            if method == REFERENCE:
                axis.plot(epochs, values, "--", color="grey", label="random order")
            else:
                axis.plot(epochs, values, "o-", label=method, markersize=3)
        axis.set_title((titles or {}).get(metric, metric), fontsize=9)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not any(lines.values()):
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
            axis.set_xticks([])
        if limits and metric in limits:
            axis.set_ylim(*limits[metric])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    width = figure.get_figwidth()
    figure.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, bottom=0.16, top=0.88)
    figure.subplots_adjust(wspace=0.25)
    return figure
