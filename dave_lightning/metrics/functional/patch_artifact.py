"""Patch-grid artifact score: how much of a map's variation repeats with the ViT's patch period.

Why: a ViT embeds every ``ph x pw`` patch with the same linear map, so a plain input gradient
reaches the pixels through the transposed patch embedding, whose filters are replicated on every
patch. The result is a pattern repeating every patch: the grid the DAVE paper shows in its
figures for gradient-based maps. A pattern with period ``(ph, pw)`` has its spectrum exactly on the
lattice of frequencies ``(k·H/ph, l·W/pw)``; the score is the share of the map's energy there.

Definition, for a map ``x`` of size ``H x W`` with 2-D DFT ``X``, ``n_h = H / ph``, ``n_w = W / pw``
and energy ``|X[u, v]|²``::

    L     = {(k·n_h, l·n_w) : 0 <= k < ph, 0 <= l < pw}       (the lattice, modulo H and W)
    score = sum of |X|² over L minus (0, 0)  /  sum of |X|² over all (u, v) != (0, 0)

``L`` is exactly the spectrum of the maps that repeat every ``(ph, pw)`` pixels, so by Parseval the
score equals the share of the map's variance carried by its **mean patch tile** ``t`` (the average
of its ``n_h·n_w`` patches, i.e. its ``(ph, pw)``-periodic part), with ``m`` the map's mean::

    score = n_h·n_w·sum((t - m)²) / sum((x - m)²)
          = periodic / (periodic + sum((x - t repeated)²))

This identity is how it is computed: exact, O(HW), no FFT and no complex buffer, in [0, 1] by
construction (the tests check it against an explicit float64 DFT).

Reading the number (lower is better):

* 1: a pure patch-periodic pattern, any non-constant tile repeated every patch (plus any
  constant). A map that is constant inside every patch (a coarse map upsampled by nearest
  neighbour) scores 0: its tile is flat. The score looks for structure repeated *inside* every
  patch, not for block edges.
* Chance level: for i.i.d. Gaussian noise (any mean and variance) the score is exactly
  Beta((P - 1) / 2, (HW - P) / 2) distributed, ``P = ph·pw``, with mean
  ``(P - 1) / (HW - 1)``: the share of the non-zero frequencies that lie on the lattice
  (:func:`patch_artifact_chance_level`; 224x224 maps, 16x16 patches: 255 / 50175 ≈ 0.0051).
  Scores far above it mean a patch-periodic component; smooth maps score far below it.
* Only the component shared by all patches is counted. Patch-embedding structure whose strength
  varies from patch to patch (as in real gradients) also spreads energy to frequencies next to the
  lattice, which the score ignores, so it is a lower bound on the visible grid.
* Invariant to scaling (sign included), to adding a constant and to circular shifts.

Choices made here:

* ``patch_size`` is an int or an ``(ph, pw)`` (height, width) tuple, like timm's; H and W must be
  positive multiples of it.
* A constant map (all values exactly equal, e.g. all zeros) has no energy off (0, 0): its score is
  0 / 0 and returned as NaN; the class excludes it and counts it in ``num_constant``. Neither 0 nor
  1 would be honest: 0 would rank a vanished (all-zero) gradient as the best possible map.
* A map containing NaN or ±inf gets a NaN score (the class counts it in ``num_nan``).
* Computed in at least float32 (half-precision maps are upcast) and returned in the maps' dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dave_lightning._common import check_int
from dave_lightning.errors import BadInputError
from dave_lightning.metrics.functional._checks import (
    check_attribution_maps,
    finite_maps,
)

__all__ = ["patch_artifact_chance_level", "patch_artifact_score"]

PatchSize = int | tuple[int, int]


def _check_patch_size(patch_size: object) -> tuple[int, int]:
    """Return ``(ph, pw)`` for an int or a pair of ints >= 1, else raise."""
    if isinstance(patch_size, tuple) and len(patch_size) == 2:
        return (
            check_int("patch_size[0]", patch_size[0], minimum=1),
            check_int("patch_size[1]", patch_size[1], minimum=1),
        )
    if isinstance(patch_size, tuple):
        raise BadInputError.for_argument(
            "patch_size", "an int or a (height, width) pair of ints", repr(patch_size)
        )
    size = check_int("patch_size", patch_size, minimum=1)
    return size, size


def _check_divisible(height: int, width: int, patch: tuple[int, int], name: str) -> None:
    patch_h, patch_w = patch
    if height < patch_h or width < patch_w or height % patch_h or width % patch_w:
        shown = patch_h if patch_h == patch_w else patch
        raise BadInputError.for_argument(
            name,
            f"height and width that are positive multiples of patch_size={shown}",
            f"height {height} and width {width}",
        )


def patch_artifact_chance_level(height: int, width: int, patch_size: PatchSize = 16) -> float:
    """Mean score of i.i.d. Gaussian noise maps: ``(ph·pw - 1) / (H·W - 1)``.

    Args:
        height: Map height H, a positive multiple of ``ph``.
        width: Map width W, a positive multiple of ``pw``.
        patch_size: ``ph = pw`` as an int, or ``(ph, pw)``.

    Returns:
        The share of the non-zero frequencies that lie on the patch lattice; NaN for 1x1 maps.

    Raises:
        BadInputError: For an invalid ``patch_size`` or sizes that are not multiples of it.

    Example:
        >>> round(patch_artifact_chance_level(224, 224, 16), 6)
        0.005082
    """
    patch = _check_patch_size(patch_size)
    check_int("height", height, minimum=1)
    check_int("width", width, minimum=1)
    _check_divisible(height, width, patch, "height, width")
    if height * width == 1:
        return math.nan
    return (patch[0] * patch[1] - 1) / (height * width - 1)


def _patch_artifact_update(maps: Tensor, patch_size: PatchSize) -> tuple[Tensor, Tensor, Tensor]:
    """Check the inputs and score each map.

    Returns:
        ``(scores, finite, constant)``: ``(B,)`` scores (NaN for non-finite and constant maps),
        the bool mask of finite maps and the bool mask of finite constant maps.
    """
    patch_h, patch_w = _check_patch_size(patch_size)
    maps = check_attribution_maps(maps, name="maps")
    batch, height, width = maps.shape
    _check_divisible(height, width, (patch_h, patch_w), "maps")
    finite = finite_maps(maps)
    constant = finite & (maps == maps[:, :1, :1]).flatten(1).all(dim=1)
    work = maps.to(torch.promote_types(maps.dtype, torch.float32))
    work = torch.where(finite[:, None, None], work, torch.zeros_like(work))
    # Centre and rescale first: the score ignores both, and it keeps float32 sums accurate.
    work = work - work.mean(dim=(1, 2), keepdim=True)
    peak = work.abs().amax(dim=(1, 2), keepdim=True)
    work = work / torch.where(peak > 0, peak, torch.ones_like(peak))
    patches = work.reshape(batch, height // patch_h, patch_h, width // patch_w, patch_w)
    tile = patches.mean(dim=(1, 3), keepdim=True)  # the (ph, pw)-periodic part
    tile_spread = (tile - tile.mean(dim=(2, 4), keepdim=True)).square().sum(dim=(1, 2, 3, 4))
    periodic = tile_spread * (height // patch_h) * (width // patch_w)
    residual = (patches - tile).square().sum(dim=(1, 2, 3, 4))
    total = periodic + residual
    scores = periodic / torch.where(total > 0, total, torch.ones_like(total))
    invalid = constant | ~finite
    scores = torch.where(invalid, torch.full_like(scores, float("nan")), scores)
    return scores.to(maps.dtype), finite, constant


def patch_artifact_score(maps: Tensor, patch_size: PatchSize = 16) -> Tensor:
    """Score each map by the share of its non-DC spectral energy on the patch-grid lattice.

    See the module documentation for the definition, how to read the number and the choices made.

    Args:
        maps: Floating ``(B, H, W)`` maps (signed attributions, gradients, …).
        patch_size: The ViT's patch size, ``ph = pw`` as an int or ``(ph, pw)``; H and W must be
            positive multiples of it.

    Returns:
        ``(B,)`` scores in [0, 1] in the maps' dtype (lower is better): 1 for a pure
        patch-periodic map, NaN for a constant map or one containing NaN or ±inf.

    Raises:
        BadInputError: For maps of the wrong type, dtype or shape, an invalid ``patch_size``, or
            a height or width that is not a positive multiple of it.

    Example:
        >>> import torch
        >>> grid = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).repeat(3, 4)  # repeats every 2 pixels
        >>> coarse = torch.tensor([[1.0, 3.0, 0.0, 2.0], [2.0, 0.0, 1.0, 1.0], [0, 4, 1, 0]])
        >>> blocks = coarse.repeat_interleave(2, 0).repeat_interleave(2, 1)  # constant per patch
        >>> maps = torch.stack([grid, blocks, grid + blocks, torch.zeros(6, 8)])
        >>> patch_artifact_score(maps, patch_size=2)  # the mix: 33 / (33 + 73), squared deviations
        tensor([1.0000, 0.0000, 0.3113,    nan])
    """
    scores, _, _ = _patch_artifact_update(maps, patch_size)
    return scores
