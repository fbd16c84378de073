"""Display post-processing against explicit per-pixel references."""

from __future__ import annotations

import math

import pytest
import torch

from dave_lightning import BadInputError, postprocess_for_display
from dave_lightning.postprocess import bilateral_filter, gaussian_blur

DOUBLE = torch.float64


def _reflect(index: int, size: int) -> int:
    """OpenCV's BORDER_REFLECT_101: ... 2 1 | 0 1 2 ... n-1 | n-2 ..."""
    while index < 0 or index >= size:
        index = -index if index < 0 else 2 * (size - 1) - index
    return index


def _reference_filter(image: torch.Tensor, size: int, weight_fn) -> torch.Tensor:
    height, width = image.shape
    out = torch.empty_like(image)
    half = size // 2
    for i in range(height):
        for j in range(width):
            total = norm = 0.0
            for di in range(-half, half + 1):
                for dj in range(-half, half + 1):
                    value = float(image[_reflect(i + di, height), _reflect(j + dj, width)])
                    w = weight_fn(di, dj, value, float(image[i, j]))
                    total += w * value
                    norm += w
            out[i, j] = total / norm
    return out


def test_gaussian_blur_matches_the_explicit_reference() -> None:
    image = torch.rand(9, 13, dtype=DOUBLE)
    sigma = 2.0
    expected = _reference_filter(
        image, 5, lambda di, dj, v, c: math.exp(-(di * di + dj * dj) / (2 * sigma**2))
    )
    torch.testing.assert_close(gaussian_blur(image, size=5, sigma=sigma), expected)


def test_bilateral_filter_matches_the_explicit_reference() -> None:
    image = torch.rand(8, 11, dtype=DOUBLE)

    def weight(di: int, dj: int, value: float, center: float) -> float:
        return math.exp(-(di * di + dj * dj) / (2 * 0.5**2) - (value - center) ** 2 / (2 * 0.05**2))

    expected = _reference_filter(image, 5, weight)
    torch.testing.assert_close(bilateral_filter(image[None])[0], expected)


def test_pipeline_is_relu_blend_bilateral_and_max_normalisation() -> None:
    maps = torch.randn(3, 24, 20, dtype=DOUBLE)
    maps[2] = -maps[2].abs()  # no positive evidence at all
    shown = postprocess_for_display(maps)
    positive = maps.clamp_min(0)
    blended = 0.5 * positive + 0.5 * gaussian_blur(positive)
    for b in range(2):
        expected = bilateral_filter(blended[b] / blended[b].max())
        torch.testing.assert_close(shown[b], expected / expected.max())
        assert float(shown[b].max()) == 1.0
    assert torch.equal(shown[2], torch.zeros(24, 20, dtype=DOUBLE))
    assert postprocess_for_display(maps[0]).shape == (24, 20)


def test_bad_maps_are_rejected() -> None:
    with pytest.raises(
        BadInputError,
        match=r"`maps`: expected a floating \(H, W\) or \(B, H, W\) tensor,"
        r" received shape \(1, 1, 4, 4\)",
    ):
        postprocess_for_display(torch.zeros(1, 1, 4, 4))


def test_the_default_blur_is_the_reference_11x11_sigma_7() -> None:
    image = torch.rand(12, 14, dtype=DOUBLE)
    expected = _reference_filter(
        image, 11, lambda di, dj, v, c: math.exp(-(di * di + dj * dj) / (2 * 7.0**2))
    )
    torch.testing.assert_close(gaussian_blur(image), expected)


def test_maps_too_small_for_the_filters_are_rejected() -> None:
    with pytest.raises(BadInputError, match=r"`maps`: expected maps larger than 5 pixels"):
        postprocess_for_display(torch.rand(2, 5, 30))
    with pytest.raises(BadInputError, match=r"for a 5x5 filter, received shape \(2, 2\)"):
        bilateral_filter(torch.rand(2, 2))
