"""Per-epoch figures of the monitor: overlays, deletion curves, noise sensitivity (rank 0)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._evaluation import MethodScores
from dave_lightning.callbacks._logging import log_figure, logging_step
from dave_lightning.callbacks._metrics import chart_title
from dave_lightning.callbacks._probe import Probe, rank_positions
from dave_lightning.metrics.functional import deletion_fractions
from dave_lightning.viz import (
    attribution_figure,
    deletion_curves_figure,
    sensitivity_figure,
    to_display,
)

if TYPE_CHECKING:
    from dave_lightning.callbacks._monitor import MonitorLogic


__all__ = ["gather_figure_maps", "log_epoch_figures"]


def gather_figure_maps(
    trainer: Any, config: MonitorConfig, probe: Probe, kept: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """The maps of the first ``log_images`` probe images, on every process (a collective).

    Empty when there is nothing to draw them for: no images asked for, no logger and no
    ``figure_dir``. Every process calls it with its share ``kept`` (positions ``rank``,
    ``rank + world_size``, ...); the shares are summed into place.
    """
    count = min(config.log_images, len(probe))
    if count == 0 or not (trainer.loggers or config.figure_dir is not None):
        return {}
    height, width = probe.images.shape[-2:]
    positions = rank_positions(trainer, count)
    gathered = {}
    for method in config.methods:
        full = torch.zeros(count, height, width, device=trainer.strategy.root_device)
        if method in kept and len(positions):
            full[positions] = kept[method].to(full)
        if trainer.world_size > 1:
            full = trainer.strategy.reduce(full, reduce_op="sum")
        gathered[method] = full.cpu()
    return gathered


def _row_titles(network: nn.Module, images: Tensor, labels: Tensor) -> list[str]:
    network.eval()  # the caller restores every module's mode
    predictions = network(images).argmax(dim=1).cpu()
    return [f"label {int(y)} · pred {int(p)}" for y, p in zip(labels, predictions, strict=True)]


def _png(config: MonitorConfig, name: str, trainer: Any) -> Path | None:
    if config.figure_dir is None:
        return None
    return Path(config.figure_dir) / f"{name}_epoch{trainer.current_epoch:03d}.png"


def log_epoch_figures(
    trainer: Any,
    monitor: MonitorLogic,
    network: nn.Module,
    results: Mapping[str, MethodScores],
    reference: Tensor | None,
    figure_maps: Mapping[str, Tensor],
) -> None:
    """Log this evaluation's figures to every logger that takes images (and to ``figure_dir``).

    Up to three figures, at the step of the epoch's scalars: ``{log_prefix}/overlays`` (the first
    probe images with each method's map), ``{log_prefix}/deletion_curves`` (every method's mean
    deletion curve and the random-order reference, when deletion is measured) and, with
    ``noise_alpha="auto"``, ``{log_prefix}/dave/noise_sensitivity`` (DAVE's sensitivity curve
    and the chosen level; the curve is also logged as scalars, with or without figures).

    Args:
        trainer: The Lightning trainer (its loggers, epoch and step).
        monitor: The monitor whose probe, options and calibration are drawn.
        network: The classifier, for the overlay titles' predictions (modes are restored by the
            caller).
        results: Per method its scores, with the deletion curve when measured.
        reference: The random-order deletion curve, or ``None``.
        figure_maps: Per method the maps of the first probe images (not empty).
    """
    config, probe = monitor.config, monitor.probe
    assert probe is not None
    count = next(iter(figure_maps.values())).shape[0]
    parameter = next(network.parameters())
    images = probe.images[:count].to(parameter.device, parameter.dtype)
    mean, std = monitor.display_stats(network)
    titles = _row_titles(network, images, probe.labels[:count])
    step, prefix = logging_step(trainer), config.log_prefix

    def send(name: str, tag: str, figure: Any) -> None:
        png = _png(config, name, trainer)
        log_figure(trainer.loggers, f"{prefix}/{tag}", figure, step, png, trainer.current_epoch)

    boxes = None if probe.boxes is None else probe.boxes[:count]
    send(
        "overlays",
        "overlays",
        attribution_figure(to_display(images, mean, std), figure_maps, titles, boxes=boxes),
    )
    curves = {m: s.deletion_curve for m, s in results.items() if s.deletion_curve is not None}
    if curves:
        fractions = deletion_fractions(
            config.deletion_steps, config.deletion_max_fraction, dtype=torch.float32
        )
        aucs = {m: s.scalars.get("deletion_auc", float("nan")) for m, s in results.items()}
        title = chart_title("deletion_auc", config.deletion_order)
        figure = deletion_curves_figure(fractions, curves, reference, title=title, aucs=aucs)
        send("deletion_curves", "deletion_curves", figure)
    curve = monitor.calibration_curve()
    if curve is not None:
        figure = sensitivity_figure(curve, used=monitor.fixed_noise_alpha)
        send("noise_sensitivity", "dave/noise_sensitivity", figure)
