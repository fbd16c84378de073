"""One Gaussian kernel for every blur: the closed form, and both blurs against independent ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torch import Tensor

from dave_lightning._common import gaussian_kernel_1d
from dave_lightning.metrics.functional._perturbation import gaussian_blur_images
from dave_lightning.postprocess import gaussian_blur


def closed_form(size: int, sigma: float) -> list[float]:
    """exp(-x² / 2σ²) at x = -(size-1)/2 .. (size-1)/2, divided by its sum, in Python floats."""
    values = [math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    return [value / sum(values) for value in values]


def blur_by_2d_convolution(images: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Reflect-pad, then slide the full 2-D kernel (outer product) over each channel, in float64."""
    row = np.array(closed_form(size, sigma))
    kernel = np.outer(row, row)
    pad = size // 2
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
    height, width = images.shape[-2:]
    out = np.zeros_like(images)
    for dy in range(size):
        for dx in range(size):
            out += kernel[dy, dx] * padded[..., dy : dy + height, dx : dx + width]
    return out


@pytest.mark.parametrize(("size", "sigma"), [(1, 1.0), (3, 0.5), (11, 7.0), (31, 7.0), (4, 1.5)])
def test_the_kernel_is_the_normalised_closed_form_in_float64(size: int, sigma: float) -> None:
    kernel = gaussian_kernel_1d(size, sigma, torch.zeros(0, dtype=torch.float64))
    assert kernel.dtype == torch.float64
    torch.testing.assert_close(
        kernel, torch.tensor(closed_form(size, sigma), dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_the_kernel_follows_the_dtype_of_like() -> None:
    assert gaussian_kernel_1d(5, 1.0, torch.zeros(1, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize(("size", "sigma"), [(3, 0.8), (5, 2.0), (11, 7.0)])
def test_both_blurs_match_an_explicit_2d_convolution(size: int, sigma: float) -> None:
    images = torch.rand(
        2, 3, 13, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    expected = torch.from_numpy(blur_by_2d_convolution(images.numpy(), size, sigma))
    torch.testing.assert_close(gaussian_blur_images(images, size, sigma), expected)
    torch.testing.assert_close(gaussian_blur(images[:, 0], size, sigma), expected[:, 0])


def test_both_blurs_match_torchvision() -> None:
    images: Tensor = torch.rand(2, 3, 40, 36, generator=torch.Generator().manual_seed(1))
    expected = TF.gaussian_blur(images, kernel_size=[11, 11], sigma=[3.0, 3.0])
    torch.testing.assert_close(gaussian_blur_images(images, 11, 3.0), expected)
    torch.testing.assert_close(gaussian_blur(images[:, 1], 11, 3.0), expected[:, 1])


def test_both_blurs_use_the_one_kernel() -> None:
    import dave_lightning.metrics.functional._perturbation as perturbation
    import dave_lightning.postprocess as postprocess

    assert perturbation.gaussian_kernel_1d is gaussian_kernel_1d
    assert postprocess.gaussian_kernel_1d is gaussian_kernel_1d
    assert not hasattr(perturbation, "_gaussian_kernel")
    assert not hasattr(postprocess, "_gaussian_kernel_1d")
