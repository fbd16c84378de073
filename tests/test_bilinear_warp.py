"""The warp's explicit adjoint: equal to the library backward and the explicit bilinear matrix,
deterministic, used off the CPU, and DAVE with it bitwise reproducible on CUDA under the flag."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dave_lightning import DAVE
from dave_lightning import transforms as transforms_module
from dave_lightning._bilinear_warp import (
    _scatter_sum,
    _sorted_sum,
    bilinear_adjoint,
    deterministic_grid_sample,
)
from dave_lightning.transforms import (
    LocalTransformDistribution,
    TransformParams,
    affine_matrices,
    slot_seed,
    warp,
)
from tests.helpers import WARP_CASES, reference_warp_weights, tiny_vit

DOUBLE = torch.float64


def _grid(params: TransformParams, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    theta = affine_matrices(params, shape[-2], shape[-1]).to(dtype)
    return F.affine_grid(theta, list(shape), align_corners=False)


def _library(images: torch.Tensor, grid: torch.Tensor, upstream: torch.Tensor) -> tuple:
    leaf = images.clone().requires_grad_(True)
    out = F.grid_sample(leaf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    (grad,) = torch.autograd.grad(out, leaf, upstream)
    return out, grad


def _mine(images: torch.Tensor, grid: torch.Tensor, upstream: torch.Tensor) -> tuple:
    leaf = images.clone().requires_grad_(True)
    out = deterministic_grid_sample(leaf, grid)
    (grad,) = torch.autograd.grad(out, leaf, upstream)
    return out, grad


def _mixed_batch(count: int) -> TransformParams:
    """One different transformation per slot, wider than the default distribution."""
    distribution = LocalTransformDistribution(
        flip_prob=0.5, rotation=60.0, translation=0.3, scale=(0.6, 1.6)
    )
    return distribution.sample([slot_seed(4, i, 2) for i in range(count)])


@pytest.mark.parametrize("name", list(WARP_CASES))
@pytest.mark.parametrize(("height", "width"), [(8, 8), (6, 10), (11, 5)])
def test_adjoint_is_the_transpose_of_the_explicit_bilinear_matrix(
    name: str, height: int, width: int
) -> None:
    params = WARP_CASES[name]
    upstream = torch.randn(1, 2, height, width, dtype=DOUBLE)
    grid = _grid(params, (1, 2, height, width), DOUBLE)
    expected = reference_warp_weights(params, height, width).T @ upstream.reshape(2, -1).T
    grad = bilinear_adjoint(upstream, grid, height, width)
    torch.testing.assert_close(grad.reshape(2, -1), expected.T)


@pytest.mark.parametrize("dtype", [DOUBLE, torch.float32])
@pytest.mark.parametrize(("height", "width"), [(16, 16), (12, 20), (33, 7), (64, 48)])
def test_forward_is_the_library_bit_for_bit_and_backward_equals_it(
    dtype: torch.dtype, height: int, width: int
) -> None:
    generator = torch.Generator().manual_seed(height * width)
    shape = (12, 3, height, width)
    images = torch.randn(shape, generator=generator, dtype=dtype)
    upstream = torch.randn(shape, generator=generator, dtype=dtype)
    grid = _grid(_mixed_batch(shape[0]), shape, dtype)
    library_out, library_grad = _library(images, grid, upstream)
    out, grad = _mine(images, grid, upstream)
    assert torch.equal(out, library_out)
    tolerance = {"atol": 1e-12, "rtol": 1e-10} if dtype == DOUBLE else {"atol": 1e-4, "rtol": 1e-4}
    torch.testing.assert_close(grad, library_grad, **tolerance)


def test_backward_equals_the_library_for_grids_far_outside_the_image() -> None:
    """Points beyond the border (clamped into dropped cells), on it and exactly on pixel centres."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 2, 9, 13, generator=generator, dtype=DOUBLE)
    grid = torch.rand(3, 10, 11, 2, generator=generator, dtype=DOUBLE) * 8 - 4
    grid[0, :3] = torch.tensor([-1.0, 1.0], dtype=DOUBLE)  # the corners of the frame
    centres = (torch.arange(13, dtype=DOUBLE) * 2 + 1) / 13 - 1  # integer pixel coordinates
    grid[1, 0, :, 0], grid[1, 0, :, 1] = centres[:11], 0.0
    upstream = torch.randn(3, 2, 10, 11, generator=generator, dtype=DOUBLE)
    library_out, library_grad = _library(images, grid, upstream)
    out, grad = _mine(images, grid, upstream)
    assert torch.equal(out, library_out)
    torch.testing.assert_close(grad, library_grad)


def test_both_accumulations_equal_an_explicit_per_cell_sum(deterministic_algorithms: None) -> None:
    """The CUDA accumulation (``index_put_``) is exercised here too, under the flag it needs."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 4, 50, generator=generator, dtype=DOUBLE)
    cell = torch.randint(0, 7, (3, 50), generator=generator)
    expected = torch.zeros(3, 4, 7, dtype=DOUBLE)
    for image in range(3):
        for pixel in range(50):
            expected[image, :, cell[image, pixel]] += values[image, :, pixel]
    torch.testing.assert_close(_scatter_sum(values, cell, 7), expected)
    torch.testing.assert_close(_sorted_sum(values, cell, 7), expected)


def test_warp_keeps_the_library_values_and_runs_under_the_deterministic_flag(
    deterministic_algorithms: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = torch.randn(6, 3, 20, 14, dtype=torch.float32)
    params = _mixed_batch(6)
    upstream = torch.randn(6, 3, 20, 14)
    grid = _grid(params, images.shape, images.dtype)
    library_out, library_grad = _library(images, grid, upstream)
    results = []
    for devices in (frozenset({"cpu"}), frozenset()):  # the CPU path, then the explicit adjoint
        monkeypatch.setattr(transforms_module, "_DETERMINISTIC_LIBRARY_WARP", devices)
        leaf = images.clone().requires_grad_(True)
        out = warp(leaf, params)
        (grad,) = torch.autograd.grad(out, leaf, upstream)
        assert torch.equal(out, library_out)
        results.append(grad)
    assert torch.equal(results[0], library_grad)
    torch.testing.assert_close(results[1], library_grad, atol=1e-5, rtol=1e-5)


def test_off_the_cpu_the_warp_backward_is_the_explicit_adjoint() -> None:
    """On today's main a CUDA warp's backward was ``grid_sampler_2d_backward`` (no deterministic
    CUDA kernel); the ``meta`` device stands in for any device other than the CPU."""
    images = torch.empty(2, 3, 8, 8, device="meta", requires_grad=True)
    out = warp(images, _mixed_batch(2))
    assert type(out.grad_fn).__name__ == "_DeterministicGridSampleBackward"
    assert torch.autograd.grad(out.sum(), images)[0].shape == images.shape


def test_the_explicit_adjoint_is_bitwise_repeatable_and_batch_independent() -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 24, 24, generator=generator)
    upstream = torch.randn(8, 3, 24, 24, generator=generator)
    grid = _grid(_mixed_batch(8), images.shape, images.dtype)
    first = _mine(images, grid, upstream)[1]
    assert torch.equal(first, _mine(images, grid, upstream)[1])
    assert torch.equal(first[5:], _mine(images[5:], grid[5:], upstream[5:])[1])


@pytest.mark.slow
def test_dave_with_the_explicit_adjoint_equals_dave_with_the_library_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = tiny_vit(img_size=16, num_classes=4).eval()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    dave = DAVE(model, num_samples=4, noise_alpha=0.2, seed=1)
    library = dave.attribute(images, [0, 3])
    monkeypatch.setattr(transforms_module, "_DETERMINISTIC_LIBRARY_WARP", frozenset())
    explicit = dave.attribute(images, [0, 3])
    torch.testing.assert_close(explicit, library, atol=1e-5, rtol=1e-4)
    assert torch.equal(explicit, dave.attribute(images, [0, 3]))


@pytest.mark.cuda
def test_dave_on_cuda_under_the_deterministic_flag_is_bitwise_reproducible(
    deterministic_algorithms: None,
) -> None:
    torch.manual_seed(0)
    model = tiny_vit(img_size=32, num_classes=4).cuda().eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)).cuda()
    dave = DAVE(model, num_samples=8, noise_alpha=0.3, max_batch_size=16, seed=2)
    first = dave.attribute(images, [0, 1, 2])
    assert torch.equal(first, dave.attribute(images, [0, 1, 2]))
    total = float(first.abs().sum())
    assert math.isfinite(total)
    assert total > 0
    # the explicit adjoint on CUDA equals the library's (run with the flag off) to float tolerance
    torch.use_deterministic_algorithms(False)
    leaf = images.clone().requires_grad_(True)
    params = _mixed_batch(3)
    upstream = torch.randn_like(images)
    library = _library(images, _grid(params, images.shape, images.dtype).cuda(), upstream)[1]
    (grad,) = torch.autograd.grad(warp(leaf, params), leaf, upstream)
    torch.testing.assert_close(grad, library, atol=1e-5, rtol=1e-5)
