"""One evaluation pass of the monitor: attribute the probe share, update and compute metrics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from dave_lightning.attributor import Attributor
from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._grids import GridSet
from dave_lightning.callbacks._metrics import MONITOR_METRICS, deletion_metric
from dave_lightning.callbacks._probe import Probe
from dave_lightning.callbacks._training_state import preserved_training_state
from dave_lightning.registry import get_attributor

__all__ = ["Evaluation", "MethodScores", "Outcome", "build_attributor"]

RANDOM_ORDER = "random_order"
"""Name of the deletion reference line (pixels removed in random order)."""
ATTRIBUTION = "attribution"
"""Failure key of a method's maps of the probe images (every image metric needs them)."""
_T = TypeVar("_T")


@dataclass
class MethodScores:
    """The results of one method after synchronisation."""

    scalars: dict[str, float] = field(default_factory=dict)
    deletion_curve: Tensor | None = None
    num_nan: int = 0


@dataclass
class Outcome:
    """What one evaluation produced, the same on every process.

    Attributes:
        results: Per method its scores (and ``"random_order"``, the deletion reference line).
        reference: The random-order deletion curve, or ``None``.
        figure_maps: Per method the maps of the first ``log_images`` probe images (may be empty).
    """

    results: dict[str, MethodScores]
    reference: Tensor | None
    figure_maps: dict[str, Tensor]


def build_attributor(
    config: MonitorConfig, network: nn.Module, method: str, autocast: torch.dtype | None
) -> Attributor:
    """The attributor of one configured method (raises on unsupported models or bad options).

    ``autocast`` is the monitor's ``autocast`` option resolved for the trainer's device.
    """
    return get_attributor(method, network, autocast_dtype=autocast, **config.options_for(method))


def _no_progress(label: str) -> None:
    """The default progress callback: nothing."""


class Evaluation:
    """The metric objects of one monitor and the pass that fills them.

    Metrics are torchmetrics objects, so :meth:`compute` is a collective under DDP: every process
    must call it after its own :meth:`update`.
    """

    def __init__(
        self,
        config: MonitorConfig,
        attributors: Mapping[str, Attributor],
        patch_size: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        self.attributors = dict(attributors)
        self.metrics: dict[str, dict[str, Metric]] = {
            method: {
                name: MONITOR_METRICS[name].build(config, patch_size) for name in config.metrics
            }
            for method in attributors
        }
        self.reference = (
            deletion_metric(replace(config.deletion, order="random"))
            if "deletion_auc" in config.metrics
            else None
        )
        self.seconds: dict[str, float] = {}
        self.progress: Callable[[str], None] = _no_progress
        """Called after each stage of :meth:`update` with its name (a progress bar's step)."""
        self._network: nn.Module | None = None
        self.failures: dict[tuple[str, str], Exception] = {}
        """This evaluation's failed steps, by ``(method, metric)`` (see :meth:`result_keys`)."""

    def progress_steps(self, has_grids: bool) -> int:
        """How many times :meth:`update` calls :attr:`progress`."""
        per_method = 2 + int(has_grids and "grid_pg" in self.config.metrics)
        return per_method * len(self.attributors) + int(self.reference is not None)

    def all_metrics(self) -> list[Metric]:
        """Every metric object, the reference line included."""
        metrics = [metric for group in self.metrics.values() for metric in group.values()]
        return metrics + ([self.reference] if self.reference is not None else [])

    def to(self, device: torch.device) -> None:
        """Move every metric's state to ``device``."""
        for metric in self.all_metrics():
            metric.to(device)

    def reset(self) -> None:
        """Forget the accumulated states and failures."""
        for metric in self.all_metrics():
            metric.reset()
        self.failures = {}

    def _timed(self, key: str, start: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    # --- failures, one (method, metric) result at a time -----------------------------------------

    def result_keys(self) -> list[tuple[str, str]]:
        """Every step that can fail on its own, in a fixed order.

        ``(method, "attribution")`` (the probe maps), each ``(method, metric)`` and the
        random-order reference line.
        """
        keys = []
        for method, metrics in self.metrics.items():
            keys += [(method, ATTRIBUTION)] + [(method, name) for name in metrics]
        if self.reference is not None:
            keys.append((RANDOM_ORDER, "deletion_auc"))
        return keys

    def failed(self, method: str, name: str) -> bool:
        """Whether ``(method, name)`` failed, or the maps it needs did."""
        needs_maps = name not in ("grid_pg", ATTRIBUTION) and method != RANDOM_ORDER
        return (method, name) in self.failures or (
            needs_maps and (method, ATTRIBUTION) in self.failures
        )

    def _guarded(self, key: tuple[str, str], step: Callable[[], _T]) -> _T | None:
        """Run ``step``; with ``on_error="warn"`` a failure is recorded under ``key`` instead."""
        if self.failed(*key):
            return None
        if self.config.on_error == "raise":
            return step()
        # each step leaves the network as it found it, so a failing one cannot skew the next
        restore = (
            contextlib.nullcontext()
            if self._network is None
            else preserved_training_state(self._network)
        )
        try:
            with restore:
                return step()
        except Exception as error:  # reported by the monitor, once agreed on every process
            self.failures[key] = error
            return None

    def agree_on_failures(self, reduce: Callable[[Tensor], Tensor] | None) -> None:
        """Make every process skip the same results (``reduce`` sums a tensor over processes)."""
        if reduce is None:
            return
        keys = self.result_keys()
        flags = reduce(torch.tensor([float(key in self.failures) for key in keys]))
        for key, flag in zip(keys, flags.cpu().tolist(), strict=True):
            if flag > 0 and key not in self.failures:
                self.failures[key] = RuntimeError("failed on another process")

    # --- the pass ------------------------------------------------------------------------------

    def update(
        self,
        network: nn.Module,
        share: Probe,
        targets: Tensor,
        grids: GridSet | None,
        keep: Tensor,
    ) -> dict[str, Tensor]:
        """Attribute this process's share and update every metric.

        Each method's attribution and each (method, metric) update is guarded on its own: with
        ``on_error="warn"`` a failure is recorded in :attr:`failures` and the others go on.

        Args:
            network: The classifier (never the DDP wrapper).
            share: This process's probe images, on the model's device.
            targets: ``(n,)`` classes to explain.
            grids: This process's grids, or ``None`` when GridPG is off or impossible.
            keep: ``(n,)`` bool, the share's images whose maps the caller wants back (figures).

        Returns:
            Method name to the maps of the ``keep`` images.
        """
        self._network = network
        try:
            return self._update(network, share, targets, grids, keep)
        finally:
            self._network = None

    def _update(
        self,
        network: nn.Module,
        share: Probe,
        targets: Tensor,
        grids: GridSet | None,
        keep: Tensor,
    ) -> dict[str, Tensor]:
        kept: dict[str, Tensor] = {}
        for method, attributor in self.attributors.items():
            maps = self._guarded(
                (method, ATTRIBUTION), partial(self._attribute, attributor, share, targets)
            )
            self.progress(f"{method} attribution")
            if maps is not None:
                kept[method] = maps[keep]
                self._update_image_metrics(method, network, share, targets, maps)
            self.progress(f"{method} metrics")
            if grids is not None and len(grids) and "grid_pg" in self.metrics[method]:
                self._guarded(
                    (method, "grid_pg"), partial(self._update_grids, attributor, method, grids)
                )
            if grids is not None and "grid_pg" in self.metrics[method]:
                self.progress(f"{method} grids")
        if self.reference is not None and len(share):
            start = time.perf_counter()
            blank = share.images.new_zeros(share.images.shape[0], *share.images.shape[2:])
            self._guarded(
                (RANDOM_ORDER, "deletion_auc"),
                lambda: self.reference.update(  # type: ignore[union-attr]
                    network, share.images, blank, targets, share.indices
                ),
            )
            self._timed("metrics", start)
        if self.reference is not None:
            self.progress("random-order reference")
        return kept

    def _attribute(self, attributor: Attributor, share: Probe, targets: Tensor) -> Tensor | None:
        if not len(share):
            return None
        start = time.perf_counter()
        maps = attributor.attribute(share.images, targets, image_ids=share.indices)
        self._timed("attribution", start)
        return maps

    def _update_grids(self, attributor: Attributor, method: str, grids: GridSet) -> None:
        start = time.perf_counter()
        grid_maps = attributor.attribute(grids.images, grids.classes, image_ids=grids.ids)
        self._timed("attribution", start)
        self.metrics[method]["grid_pg"].update(grid_maps.flatten(0, 1), grids.cells.flatten())

    def _update_image_metrics(
        self, method: str, network: nn.Module, share: Probe, targets: Tensor, maps: Tensor
    ) -> None:
        start = time.perf_counter()
        metrics = self.metrics[method]
        if "energy_pg" in metrics and (share.boxes is not None or share.masks is not None):
            regions = share.masks if share.masks is not None else share.boxes
            self._guarded((method, "energy_pg"), lambda: metrics["energy_pg"].update(maps, regions))
        if "deletion_auc" in metrics:
            self._guarded(
                (method, "deletion_auc"),
                lambda: metrics["deletion_auc"].update(
                    network, share.images, maps, targets, share.indices
                ),
            )
        if "patch_artifact" in metrics:
            self._guarded(
                (method, "patch_artifact"), lambda: metrics["patch_artifact"].update(maps)
            )
        self._timed("metrics", start)

    def compute(
        self, has_regions: bool, has_grids: bool
    ) -> tuple[dict[str, MethodScores], Tensor | None]:
        """Synchronise and compute (a collective: call on every process).

        Returns:
            Per method its scores, and the random-order reference curve (or ``None``).
        """
        start = time.perf_counter()
        results: dict[str, MethodScores] = {}
        for method, metrics in self.metrics.items():
            scores = MethodScores()
            for name, metric in metrics.items():
                if (name == "energy_pg" and not has_regions) or (
                    name == "grid_pg" and not has_grids
                ):
                    continue
                value = self._guarded((method, name), metric.compute)
                if value is None:
                    continue
                if isinstance(value, dict):
                    scores.deletion_curve = value["curve"].detach().cpu()
                    value = value["auc"]
                scores.scalars[name] = float(value)
                scores.num_nan += int(getattr(metric, "num_nan", 0))
            results[method] = scores
        reference: Tensor | None = None
        line = None
        if self.reference is not None:
            line = self._guarded((RANDOM_ORDER, "deletion_auc"), self.reference.compute)
        if line is not None:
            results[RANDOM_ORDER] = MethodScores(scalars={"deletion_auc": float(line["auc"])})
            reference = line["curve"].detach().cpu()
        self._timed("metrics", start)
        return results, reference
