"""The paper-style figures on known maps: robust scaling, colours, boxes, no pyplot state."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dave_lightning.callbacks._publish import figure_to_array
from dave_lightning.viz import (
    CMAP,
    SIGNED_CMAP,
    attribution_figure,
    colorize,
    deletion_curves_figure,
    display_maps,
    metric_history_figure,
    overlay,
    robust_normalize,
)


def _block_with_outlier() -> torch.Tensor:
    """A 48x48 map: a 16x16 block of 1.0 and one pixel of 1000 far from it."""
    maps = torch.zeros(1, 48, 48)
    maps[0, 8:24, 8:24] = 1.0
    maps[0, 40, 40] = 1000.0
    return maps


def test_one_hot_outlier_does_not_wash_out_the_rest() -> None:
    maps = _block_with_outlier()
    plain = maps / maps.amax()  # what dividing by the maximum shows: the block at 0.001
    assert float(plain[0, 16, 16]) == pytest.approx(1e-3)
    shown = display_maps(maps)
    assert float(shown[0, 16, 16]) > 0.5  # the block stays bright
    assert float(shown[0, 40, 40]) <= float(shown[0, 16, 16])  # the outlier is clipped
    assert float(shown[0, 2, 46]) < 0.05  # far from both: dark


def test_robust_normalize_against_numpy_percentile() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 20, 20, generator=generator, dtype=torch.float64).float()
    scale = np.percentile(np.abs(maps.numpy()).reshape(3, -1), 99.5, axis=1)
    expected = np.clip(maps.numpy() / scale[:, None, None], -1, 1)
    got = robust_normalize(maps, signed=True)
    assert np.allclose(got.numpy(), expected, atol=1e-6)
    assert float(robust_normalize(maps).min()) == 0.0  # unsigned: negatives are 0
    assert robust_normalize(torch.zeros(1, 5, 5)).abs().sum() == 0  # an all-zero map stays 0


def test_signed_maps_use_the_diverging_colormap_centred_at_zero() -> None:
    values = torch.tensor([[[-1.0, 0.0, 1.0]]])
    colours = colorize(values, SIGNED_CMAP, signed=True)[0, :, 0].T
    cmap = matplotlib.colormaps[SIGNED_CMAP]
    for colour, position in zip(colours, (0.0, 0.5, 1.0), strict=True):
        assert np.allclose(colour.numpy(), cmap(position)[:3], atol=1e-6)
    assert CMAP == "inferno"


def test_overlay_is_on_a_greyscale_copy() -> None:
    images = torch.zeros(1, 3, 16, 16)
    images[:, 0] = 1.0  # pure red
    blended = overlay(images, torch.zeros(1, 16, 16))  # no evidence: grey image under black
    grey = 0.35 * 0.299  # red's luma under inferno's near-black zero
    for channel in range(3):
        assert torch.allclose(blended[0, channel], torch.full((16, 16), grey), atol=0.01)


def test_attribution_figure_panels_colour_bar_and_boxes() -> None:
    images = torch.rand(2, 3, 24, 24)
    maps = {"dave": torch.randn(2, 24, 24), "gradient": torch.randn(2, 24, 24)}
    boxes = [torch.tensor([[2.0, 2.0, 12.0, 12.0]]), torch.zeros(0, 4)]
    before = matplotlib.get_backend()
    figure = attribution_figure(images, maps, ["a", "b"], boxes=boxes)
    assert isinstance(figure, Figure)
    assert matplotlib.get_backend() == before  # the backend is never switched
    mosaic, bar = figure.axes
    assert [text.get_text() for text in mosaic.texts] == [
        "image",
        "dave",
        "dave on image",
        "gradient",
        "gradient on image",
        "a",
        "b",
    ]
    assert "99.5th" in bar.get_ylabel()
    assert len(mosaic.patches) == 5  # row 0's box on each of its five panels, none in row 1
    pad = 2  # max(2, width // 16)
    x0, y0 = mosaic.patches[1].get_xy()  # the box on dave's map, one tile to the right
    assert (x0, y0) == (pad + (24 + pad) + 2 - 0.5, pad + 2 - 0.5)
    tile = np.asarray(mosaic.images[0].get_array())[pad : pad + 24, 2 * pad + 24 : 2 * pad + 48]
    expected = colorize(display_maps(maps["dave"][:1]), CMAP)[0].permute(1, 2, 0).numpy()
    assert np.allclose(tile, expected, atol=1e-6)  # the map alone in inferno
    signed = attribution_figure(images, maps, signed=True)
    right = slice(2 * pad + 24, 2 * pad + 48)
    tile = np.asarray(signed.axes[0].images[0].get_array())[pad : pad + 24, right]
    shown = display_maps(maps["dave"][:1], signed=True)
    expected = colorize(shown, SIGNED_CMAP, signed=True)[0].permute(1, 2, 0).numpy()
    assert np.allclose(tile, expected, atol=1e-6)  # both signs, white at 0
    assert figure_to_array(figure).ndim == 3


def test_deletion_figure_legend_limits_and_label() -> None:
    fractions = torch.linspace(0, 1, 5)
    flat = torch.tensor([1.0, 0.99, 1.0, 0.98, 0.99])  # noise around one level
    figure = deletion_curves_figure(
        fractions, {"dave": flat}, flat, aucs={"dave": 0.412, "random_order": 0.5}
    )
    axis = figure.axes[0]
    assert axis.get_ylim() == (0.0, 1.05)  # not a zoom onto noise
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert labels == ["dave (AUC 0.412)", "random order (AUC 0.500)"]
    figure.canvas.draw()
    label_box = axis.yaxis.label.get_window_extent()
    assert label_box.x0 >= 0  # the y-label is inside the figure
    raw = deletion_curves_figure(fractions, {"dave": flat * 0.16}, normalized=False)
    low, high = raw.axes[0].get_ylim()
    assert high - low >= 0.2


def test_history_draws_the_reference_dashed() -> None:
    figure = metric_history_figure(
        {"deletion_auc": {"dave": [(0, 0.3), (1, 0.2)], "random_order": [(0, 0.6), (1, 0.6)]}},
        limits={"deletion_auc": (0.0, 1.05)},
    )
    lines = figure.axes[0].get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "--"]
    assert figure.axes[0].get_ylim() == (0.0, 1.05)
