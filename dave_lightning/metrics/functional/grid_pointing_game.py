"""Grid pointing game (GridPG): how much positive attribution falls in the explained cell.

Protocol (as used by the DAVE paper, after Böhle et al.): ``grid_size``² confidently classified
images of distinct classes are tiled into one grid image; the attribution for the class of one cell
is computed on the whole grid; the score is the positive attribution inside that cell divided by the
positive attribution over the whole grid, 0 when the map has no positive mass. Chance level is
``1 / grid_size²`` (25 % for the paper's 2x2 grids). Higher is better.

Choices made here, where the protocol leaves room:

* ``smoothing`` (odd, 1 = off) applies an average pool with stride 1 and zero padding counted in
  the average (``F.avg_pool2d`` defaults) **before** negative values are clipped, as in localisation
  evaluations that smooth coarse maps. Because it comes first, it also lets
  nearby positive and negative values cancel, and the zero padding loses some mass at the image
  border.
* Cells are ``H / grid_size`` by ``W / grid_size`` pixels, indexed row-major: cell ``c`` is row
  ``c // grid_size``, column ``c % grid_size``. H and W must divide by ``grid_size``.
* A map containing NaN or ±inf gets a NaN score (the class counts and excludes it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dave_lightning._common import check_int
from dave_lightning.errors import BadInputError
from dave_lightning.metrics.functional._checks import (
    check_attribution_maps,
    describe,
    finite_maps,
    is_integer_tensor,
    positive_mass_ratio,
)

__all__ = ["grid_pointing_game"]


def _check_grid_options(grid_size: int, smoothing: int) -> None:
    check_int("grid_size", grid_size, minimum=1)
    check_int("smoothing", smoothing, minimum=1, odd=True)


def _check_target_cell(target_cell: object, batch: int, grid_size: int) -> Tensor:
    if not is_integer_tensor(target_cell) or target_cell.shape != (batch,):
        raise BadInputError.for_argument(
            "target_cell", f"an integer tensor of shape ({batch},)", describe(target_cell)
        )
    cells = grid_size * grid_size
    if batch and (int(target_cell.min()) < 0 or int(target_cell.max()) >= cells):
        raise BadInputError.for_argument(
            "target_cell",
            f"cell indices in [0, {cells - 1}] for grid_size={grid_size}",
            f"values in [{int(target_cell.min())}, {int(target_cell.max())}]",
        )
    return target_cell


def _grid_pointing_game_update(
    attributions: Tensor, target_cell: Tensor, grid_size: int, smoothing: int
) -> tuple[Tensor, Tensor]:
    """Check the inputs and score each map.

    Returns:
        ``(scores, finite)``: ``(B,)`` scores (NaN for non-finite maps) and the ``(B,)`` bool mask
        of finite maps.
    """
    _check_grid_options(grid_size, smoothing)
    maps = check_attribution_maps(attributions)
    batch, height, width = maps.shape
    if height % grid_size or width % grid_size:
        raise BadInputError.for_argument(
            "attributions",
            f"height and width divisible by grid_size={grid_size}",
            f"shape {tuple(maps.shape)}",
        )
    cells = _check_target_cell(target_cell, batch, grid_size).to(maps.device)
    finite = finite_maps(maps)
    maps = torch.where(finite[:, None, None], maps, torch.zeros_like(maps))
    if smoothing > 1:
        maps = F.avg_pool2d(maps[:, None], smoothing, stride=1, padding=smoothing // 2)[:, 0]
    positive = maps.clamp(min=0)
    per_cell = positive.reshape(
        batch, grid_size, height // grid_size, grid_size, width // grid_size
    ).sum(dim=(2, 4))
    inside = per_cell.reshape(batch, -1).gather(1, cells[:, None].long())[:, 0]
    scores = positive_mass_ratio(inside, positive.sum(dim=(1, 2)))
    return torch.where(finite, scores, torch.full_like(scores, float("nan"))), finite


def grid_pointing_game(
    attributions: Tensor, target_cell: Tensor, grid_size: int = 2, smoothing: int = 1
) -> Tensor:
    """Score each map by its share of positive attribution inside the explained grid cell.

    Args:
        attributions: Floating ``(B, H, W)`` signed attribution maps of grid images.
        target_cell: Integer ``(B,)`` row-major index of the cell whose class was explained.
        grid_size: Cells per side; H and W must divide by it.
        smoothing: Odd average-pool kernel applied before clipping negatives; 1 disables it.

    Returns:
        ``(B,)`` scores in [0, 1] in the maps' dtype: 0 where a map has no positive mass, NaN
        where a map contains NaN or ±inf.

    Raises:
        BadInputError: For a wrong shape or dtype, a size not divisible by ``grid_size``, a cell
            index out of range, or invalid options.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 4, 4)
        >>> maps[:, :2, :2] = 3.0    # top-left cell
        >>> maps[:, 2:, 2:] = 1.0    # bottom-right cell
        >>> maps[:, 2:, :2] = -5.0   # negative evidence is ignored
        >>> grid_pointing_game(maps, torch.tensor([0, 3]))
        tensor([0.7500, 0.2500])
    """
    scores, _ = _grid_pointing_game_update(attributions, target_cell, grid_size, smoothing)
    return scores
