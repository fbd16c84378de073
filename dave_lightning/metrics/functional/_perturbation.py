"""Building blocks of pixel deletion: removal ranks, replacement images, model evaluation (private).

Everything here is vectorised over images and pixels; the only Python loops run over images
(one random permutation each) and over evaluation batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dave_lightning._common import gaussian_kernel_1d, restored_modes

__all__ = [
    "evaluation_mode",
    "gaussian_blur_images",
    "removal_ranks",
    "step_counts",
]


def step_counts(steps: int, max_fraction: float, num_pixels: int, device: torch.device) -> Tensor:
    """Pixels removed at steps ``0..steps``: ``round(k / steps · max_fraction · num_pixels)``.

    Rounding is half to even (``torch.round``), computed in float64.
    """
    fractions = torch.arange(steps + 1, dtype=torch.float64) / steps * max_fraction
    return torch.round(fractions * num_pixels).to(device=device, dtype=torch.int64)


def permutation_seed(seed: int, image_id: int) -> int:
    """The seed of one image's tie-breaking permutation: a function of ``(seed, image_id)`` only.

    Example:
        >>> permutation_seed(0, 3) == permutation_seed(0, 3) != permutation_seed(1, 3)
        True
    """
    return (seed * 0x9E3779B97F4A7C15 + image_id * 0xBF58476D1CE4E5B9 + 1) % (2**63)


def removal_ranks(attributions: Tensor, order: str, seeds: Sequence[int]) -> Tensor:
    """Position of every pixel in the removal order, ties broken at random.

    Each image's pixels are first shuffled by a permutation drawn from a CPU generator seeded
    with that image's seed (so the result depends neither on the device nor on the other images
    in the batch; the global RNG is not touched); a *stable* sort of the shuffled values then
    leaves tied pixels in that random order. ``"random"`` uses the permutation alone.

    Args:
        attributions: ``(B, H, W)`` finite maps.
        order: ``"most_relevant_first"``, ``"least_relevant_first"`` or ``"random"``.
        seeds: One seed per image (see :func:`permutation_seed`).

    Returns:
        ``(B, H·W)`` integer ranks: pixel ``p`` of image ``b`` is removed at the first step that
        removes more than ``ranks[b, p]`` pixels.
    """
    batch = attributions.shape[0]
    flat = attributions.reshape(batch, -1)
    num_pixels = flat.shape[1]
    shuffle = torch.zeros(batch, num_pixels, dtype=torch.long)
    generator = torch.Generator()
    for row, seed in zip(shuffle, seeds, strict=True):
        row.copy_(torch.randperm(num_pixels, generator=generator.manual_seed(seed)))
    shuffle = shuffle.to(flat.device)
    if order == "random":
        removal_order = shuffle
    else:
        descending = order == "most_relevant_first"
        sorted_positions = torch.sort(
            flat.gather(1, shuffle), dim=1, descending=descending, stable=True
        ).indices
        removal_order = shuffle.gather(1, sorted_positions)
    rank_dtype = torch.int32 if num_pixels < 2**31 else torch.int64  # halves the rank copies
    positions = torch.arange(num_pixels, device=flat.device, dtype=rank_dtype)
    ranks = torch.empty(batch, num_pixels, device=flat.device, dtype=rank_dtype)
    return ranks.scatter_(1, removal_order, positions.expand(batch, num_pixels))


def _reflect_indices(size: int, pad: int, device: torch.device) -> Tensor:
    """Source indices of a length-``size`` axis padded by ``pad`` with mirror reflection.

    The edge sample is not repeated (``... 2 1 | 0 1 2 | 1 0 ...``, torch's ``"reflect"``), and
    the reflection repeats periodically, so any ``pad`` works, even one longer than the axis.
    """
    positions = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def gaussian_blur_images(images: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images, each channel alone, mirrored borders.

    Args:
        images: Floating ``(B, C, H, W)``.
        kernel_size: Odd kernel size (the paper's script: 31).
        sigma: Standard deviation in pixels (the paper's script: 7).

    Returns:
        The blurred images, same shape and dtype.
    """
    batch, channels, height, width = images.shape
    pad = kernel_size // 2
    padded = images.index_select(2, _reflect_indices(height, pad, images.device))
    padded = padded.index_select(3, _reflect_indices(width, pad, images.device))
    kernel = gaussian_kernel_1d(kernel_size, sigma, images)
    flat = padded.reshape(batch * channels, 1, height + 2 * pad, width + 2 * pad)
    flat = F.conv2d(flat, kernel.view(1, 1, 1, kernel_size))
    flat = F.conv2d(flat, kernel.view(1, 1, kernel_size, 1))
    return flat.reshape(batch, channels, height, width)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode without gradients; restore every module's flag afterwards.

    The flags are restored one by one (not with ``model.train()``), so a model whose submodules
    were in mixed modes gets exactly its modes back, also when the body raises.
    """
    with restored_modes(model), torch.no_grad():
        model.eval()
        yield
