"""GridPointingGame: the grid pointing game as a torchmetrics metric."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dave_lightning.metrics._per_sample_scores import PerSampleScoreMetric
from dave_lightning.metrics.functional.grid_pointing_game import (
    _check_grid_options,
    _grid_pointing_game_update,
)

__all__ = ["GridPointingGame"]


class GridPointingGame(PerSampleScoreMetric):
    """Mean share of positive attribution inside the explained cell of a grid image.

    Delegates to :func:`~dave_lightning.metrics.functional.grid_pointing_game`, whose
    documentation gives the protocol (the DAVE paper's GridPG: 2x2 grids of confidently
    classified images of distinct classes, chance level 25 %) and the choices made. Higher is
    better; ``compute()`` returns the mean over included samples. Maps containing NaN or ±inf are
    excluded with a warning and counted in ``num_nan``; ``per_sample_scores()`` and ``plot()``
    give the distribution.

    Args:
        grid_size: Cells per side of the grid images.
        smoothing: Odd average-pool kernel applied to the maps before clipping negatives; 1 = off.
        kwargs: Forwarded to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Raises:
        BadInputError: For an invalid ``grid_size`` or ``smoothing``.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 4, 4)
        >>> maps[:, :2, :2] = 3.0
        >>> maps[:, 2:, 2:] = 1.0
        >>> metric = GridPointingGame(grid_size=2)
        >>> metric.update(maps, torch.tensor([0, 3]))
        >>> metric.compute()
        tensor(0.5000)
        >>> metric.per_sample_scores()
        tensor([0.7500, 0.2500])
    """

    def __init__(self, grid_size: int = 2, smoothing: int = 1, **kwargs: Any) -> None:
        _check_grid_options(grid_size, smoothing)
        super().__init__(**kwargs)
        self.grid_size = grid_size
        self.smoothing = smoothing

    def update(self, attributions: Tensor, target_cell: Tensor) -> None:
        """Score a batch of ``(B, H, W)`` maps against their ``(B,)`` explained cells."""
        scores, finite = _grid_pointing_game_update(
            attributions, target_cell, self.grid_size, self.smoothing
        )
        self._accumulate(scores, finite, finite)

    def _reference_line(self) -> tuple[float | None, str]:
        return 1.0 / self.grid_size**2, "chance level"
