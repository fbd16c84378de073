"""EnergyPointingGame: the energy pointing game as a torchmetrics metric."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dave_lightning.metrics._per_sample_scores import PerSampleScoreMetric
from dave_lightning.metrics.functional.energy_pointing_game import (
    Boxes,
    _energy_pointing_game_update,
)

__all__ = ["EnergyPointingGame"]


class EnergyPointingGame(PerSampleScoreMetric):
    """Mean share of positive attribution inside the union of the object's boxes.

    Delegates to :func:`~dave_lightning.metrics.functional.energy_pointing_game`, whose
    documentation gives the protocol and the box conventions. Higher is better; ``compute()``
    returns the mean over included samples. Samples whose box region covers no pixel are excluded
    and counted in ``num_empty``; maps containing NaN or ±inf are excluded with a warning and
    counted in ``num_nan`` (a sample that is both counts as NaN). ``per_sample_scores()`` and
    ``plot()`` give the distribution.

    Args:
        kwargs: Forwarded to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example:
        >>> import torch
        >>> maps = torch.zeros(3, 4, 4)
        >>> maps[:, 0, 0] = 3.0
        >>> maps[:, 3, 3] = 1.0
        >>> boxes = torch.tensor([[[0, 0, 2, 2]], [[0, 0, 4, 4]], [[2, 2, 2, 4]]])  # (B, 1, 4)
        >>> metric = EnergyPointingGame()
        >>> metric.update(maps, boxes)
        >>> metric.compute(), metric.num_empty
        (tensor(0.8750), tensor(1))
    """

    num_empty: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("num_empty", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, attributions: Tensor, boxes: Boxes) -> None:
        """Score a batch of ``(B, H, W)`` maps against their boxes (or ``(B, H, W)`` masks)."""
        scores, finite, empty = _energy_pointing_game_update(attributions, boxes)
        self.num_empty += (empty & finite).sum()
        self._accumulate(scores, finite & ~empty, finite)
