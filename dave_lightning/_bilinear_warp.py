"""Bilinear sampling whose backward is deterministic on every device.

The forward is the library's ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``),
so warped images are exactly today's. Its adjoint is what makes it worth a module: on CUDA the
library backward adds each output pixel's gradient into its four input neighbours with atomics,
so the order of the additions (and the last bits of the result) changes from run to run, and under
``torch.use_deterministic_algorithms(True)`` it refuses to run at all.

Here the adjoint is written out. Output pixel ``q`` samples the input at ``(x, y)`` (pixel units),
i.e. the four neighbours ``(x0 + a, y0 + b)`` with ``x0 = ⌊x⌋``, ``y0 = ⌊y⌋``, ``a, b ∈ {0, 1}``
and weights ``w_ab = (a ? fx : 1 - fx) · (b ? fy : 1 - fy)``, ``fx = x - x0``, ``fy = y - y0``.
Every output pixel whose cell ``(x0, y0)`` is the same adds into the same four input pixels, so

1. each output pixel's gradient ``g`` times its four weights is summed per cell (one indexed
   accumulation of ``4 · C`` values per output pixel, in a fixed order), and
2. the input gradient at ``p`` is
   ``A_00[p] + A_10[p - (1, 0)] + A_01[p - (0, 1)] + A_11[p - (1, 1)]`` (shifted views, added).

Step 1 is the only reduction with repeated targets. It uses the accumulation each device does in a
fixed order: ``scatter_add_`` on the CPU (each image's slice is summed by one thread, serially),
``index_put_(accumulate=True)`` elsewhere (on CUDA a stable radix sort of the cell indices followed
by a sequential sum of each run of equal indices, with or without the deterministic flag). The
result equals the library backward up to the order of additions, i.e. to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bilinear_adjoint", "deterministic_grid_sample"]


def _cells_and_weights(grid: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Per output pixel: its cell's index and the weights of its four input neighbours.

    Cells ``(x0, y0)`` are clamped to ``-2 <= x0 <= width``, ``-2 <= y0 <= height`` and numbered
    row-major on the ``(height + 3, width + 3)`` grid that starts at ``(-2, -2)``. Clamping moves
    only cells whose four neighbours all lie outside the image into the border cells
    ``x0 ∈ {-2, width}`` or ``y0 ∈ {-2, height}``, whose every neighbour is outside too, so
    nothing they collect reaches the image.

    Returns:
        ``(n, P)`` int64 cell indices and ``(n, 4, 1, P)`` weights in the order
        ``(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)``, with ``P`` output pixels.
    """
    count = grid.shape[0]
    size = grid.new_tensor([width, height])
    # pixel coordinates (x, y) as grid_sample computes them for align_corners=False
    coords = (grid.reshape(count, -1, 2) + 1.0).mul_(size / 2).sub_(0.5)
    corner = coords.floor()
    fraction = coords.sub_(corner).transpose(1, 2)  # (n, 2, P): fx, fy
    pair = torch.stack([1.0 - fraction, fraction], dim=1)  # (n, 2, 2, P): (1 - f, f) × (x, y)
    weights = pair[:, :, None, 1] * pair[:, None, :, 0]  # (n, b, a, P): y factor × x factor
    cell = corner.clamp_(min=torch.full_like(size, -2.0), max=size).long().add_(2)
    index = cell[..., 1].mul(width + 3).add_(cell[..., 0])  # integer arithmetic: exact
    return index, weights.view(count, 4, 1, -1)


def _scatter_sum(values: Tensor, cell: Tensor, cells: int) -> Tensor:
    """:func:`_sum_per_cell` by ``scatter_add_``: in a fixed order on the CPU, not on CUDA.

    The CPU kernel gives each (image, channel) slice to one thread, which walks it in order.
    """
    out = values.new_zeros(*values.shape[:2], cells)
    return out.scatter_add_(2, cell[:, None, :].expand_as(values), values)


def _sorted_sum(values: Tensor, cell: Tensor, cells: int) -> Tensor:
    """:func:`_sum_per_cell` by ``index_put_(accumulate=True)``: in a fixed order on CUDA.

    On CUDA it sorts the row indices (a stable radix sort) and sums each run of equal rows
    sequentially, with or without the deterministic flag; CUDA's ``scatter_add_`` and
    ``index_add_`` add with atomics instead. (On the CPU this one is the non-deterministic one,
    unless the flag is set.)
    """
    count, width, _ = values.shape
    rows = cell + torch.arange(count, device=cell.device)[:, None] * cells
    out = values.new_zeros(count * cells, width)
    out.index_put_((rows.reshape(-1),), values.transpose(1, 2).reshape(-1, width), accumulate=True)
    return out.view(count, cells, width).transpose(1, 2)


def _sum_per_cell(values: Tensor, cell: Tensor, cells: int) -> Tensor:
    """``out[i, :, c] = Σ values[i, :, q]`` over output pixels ``q`` of cell ``c``, in fixed order.

    Args:
        values: ``(n, K, P)``.
        cell: ``(n, P)`` int64 indices below ``cells``.
        cells: The number of cells.

    Returns:
        ``(n, K, cells)``.
    """
    if values.device.type == "cpu":
        return _scatter_sum(values, cell, cells)
    return _sorted_sum(values, cell, cells)


def bilinear_adjoint(grad_output: Tensor, grid: Tensor, height: int, width: int) -> Tensor:
    """The input gradient of bilinear ``grid_sample`` (zero padding, ``align_corners=False``).

    Deterministic on every device (see the module docstring).

    Args:
        grad_output: ``(n, C, H_out, W_out)`` gradient of the sampled output.
        grid: ``(n, H_out, W_out, 2)`` sampling grid in normalised coordinates.
        height: Input height ``H``.
        width: Input width ``W``.

    Returns:
        ``(n, C, H, W)`` gradient of the input.

    Example:
        >>> import torch
        >>> image = torch.randn(1, 2, 5, 7, requires_grad=True)
        >>> grid = torch.rand(1, 4, 6, 2) * 2.4 - 1.2
        >>> upstream = torch.randn(1, 2, 4, 6)
        >>> sampled = F.grid_sample(image, grid, align_corners=False)
        >>> (library,) = torch.autograd.grad(sampled, image, upstream)
        >>> torch.allclose(bilinear_adjoint(upstream, grid, 5, 7), library, atol=1e-6)
        True
    """
    count, channels = grad_output.shape[:2]
    coordinates = grid.to(torch.promote_types(grid.dtype, torch.float32))
    cell, weights = _cells_and_weights(coordinates, height, width)
    per_corner = weights.to(grad_output.dtype) * grad_output.reshape(count, 1, channels, -1)
    cells = (height + 3) * (width + 3)
    summed = _sum_per_cell(per_corner.view(count, 4 * channels, -1), cell, cells)
    corner = summed.view(count, 4, channels, height + 3, width + 3)
    # input pixel (y, x) is corner (a, b) of cell (x - a, y - b), stored at (y - b + 2, x - a + 2)
    grad_input = corner[:, 0, :, 2:-1, 2:-1] + corner[:, 1, :, 2:-1, 1:-2]
    grad_input += corner[:, 2, :, 1:-2, 2:-1]
    grad_input += corner[:, 3, :, 1:-2, 1:-2]
    return grad_input


class _DeterministicGridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, images: Tensor, grid: Tensor) -> Tensor:
        ctx.save_for_backward(grid)
        ctx.input_size = images.shape[-2:]
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (grid,) = ctx.saved_tensors
        height, width = ctx.input_size
        return bilinear_adjoint(grad_output, grid, height, width), None


def deterministic_grid_sample(images: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample`` (bilinear, zeros, ``align_corners=False``) with a deterministic backward.

    The forward values are the library's, bit for bit; the gradient of ``images`` is
    :func:`bilinear_adjoint` (the grid gets none: it must not require one).

    Args:
        images: ``(n, C, H, W)``.
        grid: ``(n, H_out, W_out, 2)`` in normalised coordinates, a constant.

    Returns:
        ``(n, C, H_out, W_out)`` sampled images.

    Raises:
        ValueError: When ``grid`` requires a gradient.
    """
    if grid.requires_grad:
        raise ValueError("deterministic_grid_sample: the grid must be a constant")
    out: Tensor = _DeterministicGridSample.apply(images, grid)
    return out
