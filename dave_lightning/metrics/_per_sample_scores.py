"""States, compute and plotting of metrics that average one score per map (private base class).

Its subclasses: the two pointing games and :class:`~dave_lightning.metrics.PatchArtifactScore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from dave_lightning.metrics._non_finite import warn_non_finite
from dave_lightning.metrics._plot import plot_distribution

__all__ = ["PerSampleScoreMetric"]


class PerSampleScoreMetric(Metric):
    """Mean of per-sample scores in [0, 1], with the scores kept for their distribution.

    States (all synchronised across processes): ``score_sum`` and ``count`` (sums) give the mean;
    ``num_nan`` (sum) counts maps with NaN or ±inf, which are excluded; ``scores`` (``cat``) keeps
    the included per-sample scores for :meth:`per_sample_scores` and :meth:`plot`, in the metric's
    dtype (``set_dtype``) so that every process gathers the same dtype. Higher is better unless
    a subclass says otherwise (:class:`~dave_lightning.metrics.PatchArtifactScore` does).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    score_sum: Tensor
    count: Tensor
    num_nan: Tensor
    scores: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("score_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("num_nan", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def _accumulate(self, scores: Tensor, include: Tensor, finite: Tensor) -> None:
        """Add the ``include``-d scores; count and warn about non-finite maps."""
        self.num_nan += warn_non_finite(type(self).__name__, finite)
        kept = scores[include]
        self.score_sum += kept.sum().to(self.score_sum.dtype)
        self.count += kept.numel()
        self.scores.append(kept.to(self.dtype))

    def compute(self) -> Tensor:
        """Mean score over the included samples (NaN before any was included)."""
        return self.score_sum / self.count

    def per_sample_scores(self) -> Tensor:
        """All included per-sample scores, gathered from every process.

        In a distributed run this is a collective operation: call it on every rank.

        Returns:
            ``(N,)`` scores in the order they were accumulated (rank by rank).
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn):
            if isinstance(self.scores, list) and not self.scores:
                return torch.zeros(0, dtype=self.dtype, device=self.device)
            return dim_zero_cat(self.scores).clone()

    def _reference_line(self) -> tuple[float | None, str]:
        """A reference value to mark in the distribution plot (e.g. chance level), and its label."""
        return None, ""

    def plot(self, val: Tensor | Sequence[Tensor] | None = None, ax: Any = None) -> tuple[Any, Any]:
        """Plot the distribution of per-sample scores, or metric values over time.

        Args:
            val: ``None`` to histogram every accumulated score (a collective call in a distributed
                run); a 1-D tensor of per-sample scores to histogram those; a scalar result of
                :meth:`compute` or a sequence of them to plot values over steps (torchmetrics'
                standard plot).
            ax: A matplotlib axis to draw on; a new figure is made when ``None``.

        Returns:
            The figure and the axis.

        Example:
            >>> import torch
            >>> from dave_lightning.metrics import GridPointingGame
            >>> metric = GridPointingGame()
            >>> metric.update(torch.rand(8, 4, 4), torch.arange(8) % 4)
            >>> fig, ax = metric.plot()  # histogram with the mean and the 25 % chance level
            >>> int(sum(bar.get_height() for bar in ax.patches))
            8
        """
        if val is None or (isinstance(val, Tensor) and val.dim() == 1):
            scores = self.per_sample_scores() if val is None else val
            reference, label = self._reference_line()
            return plot_distribution(
                scores,
                ax,
                type(self).__name__,
                reference=reference,
                reference_label=label,
                higher_is_better=bool(self.higher_is_better),
            )
        return self._plot(val, ax)
