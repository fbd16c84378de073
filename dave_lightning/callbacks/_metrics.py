"""The metrics the monitor can compute: one table of name → factory and chart title.

Which way a metric improves is never written here: it is read from the metric object's own
``higher_is_better`` (pixel deletion's depends on its ``order``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torchmetrics import Metric

from dave_lightning.metrics import (
    DeletionOptions,
    EnergyPointingGame,
    GridPointingGame,
    PatchArtifactScore,
    PixelDeletion,
)
from dave_lightning.metrics._plot import direction_label

__all__ = [
    "MONITOR_METRICS",
    "MetricSpec",
    "chart_title",
    "deletion_metric",
    "higher_is_better",
]


class MetricOptions(Protocol):
    """The monitor options the metric factories read (a ``MonitorConfig`` has them)."""

    @property
    def grid_size(self) -> int:
        """GridPG grid side."""

    @property
    def deletion(self) -> DeletionOptions:
        """Pixel deletion's options."""


def deletion_metric(options: DeletionOptions) -> PixelDeletion:
    """The monitor's pixel deletion: normalised, so AUCs compare across epochs (see the metric)."""
    return PixelDeletion.from_options(options, normalize=True)


@dataclass(frozen=True)
class MetricSpec:
    """One monitor metric.

    Attributes:
        metric_type: The torchmetrics class (its ``higher_is_better`` gives the direction).
        title: Long name for charts, without the direction.
        build: The metric object for a configuration and the model's patch size (or ``None``).
    """

    metric_type: type[Metric]
    title: str
    build: Callable[[MetricOptions, tuple[int, int] | None], Metric]


def _patch_artifact(config: MetricOptions, patch_size: tuple[int, int] | None) -> Metric:
    assert patch_size is not None, "patch_artifact needs the patch size"
    return PatchArtifactScore(patch_size=patch_size)


MONITOR_METRICS: dict[str, MetricSpec] = {
    "grid_pg": MetricSpec(
        GridPointingGame,
        "GridPG (grid pointing game)",
        lambda config, _: GridPointingGame(grid_size=config.grid_size),
    ),
    "energy_pg": MetricSpec(
        EnergyPointingGame,
        "EnergyPG (energy pointing game)",
        lambda config, _: EnergyPointingGame(),
    ),
    "deletion_auc": MetricSpec(
        PixelDeletion,
        "pixel deletion AUC of score / unperturbed score",
        lambda config, _: deletion_metric(config.deletion),
    ),
    "patch_artifact": MetricSpec(PatchArtifactScore, "patch-grid artifact score", _patch_artifact),
}
"""Every metric the monitor can compute, by the name used in ``metrics=`` and in the tags."""


def higher_is_better(metric: str, deletion_order: str) -> bool | None:
    """Which way ``metric`` improves, as its metric class says (deletion: for ``deletion_order``).

    Example:
        >>> higher_is_better("grid_pg", "most_relevant_first")
        True
        >>> higher_is_better("deletion_auc", "most_relevant_first")
        False
    """
    if metric == "deletion_auc":
        return PixelDeletion(order=deletion_order).higher_is_better  # type: ignore[arg-type]
    direction = MONITOR_METRICS[metric].metric_type.higher_is_better
    return None if direction is None else bool(direction)


def chart_title(metric: str, deletion_order: str) -> str:
    """A chart title saying which way the metric improves.

    Example:
        >>> chart_title("deletion_auc", "most_relevant_first")
        'pixel deletion AUC of score / unperturbed score, most relevant first (lower is better)'
        >>> chart_title("patch_artifact", "most_relevant_first")
        'patch-grid artifact score (lower is better)'
    """
    title = MONITOR_METRICS[metric].title
    if metric == "deletion_auc":
        title += ", " + deletion_order.replace("_", " ")
    return f"{title} ({direction_label(higher_is_better(metric, deletion_order))})"
