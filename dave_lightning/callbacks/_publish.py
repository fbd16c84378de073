"""Publishing one evaluation: scalars, the custom-scalars layout and figures, to every logger.

Everything here takes values (options, probe, scores, maps), never the monitor. Loggers are
recognised by what they can do, not by class, so the same code serves ``pytorch_lightning`` and
``lightning.pytorch`` trainers: a TensorBoard ``SummaryWriter`` as ``logger.experiment`` gets
figures (indexed by epoch) and a custom-scalars layout, and the scores go into one run per method
beside it (:mod:`dave_lightning.callbacks._runs`); any logger with ``log_image`` (e.g. Weights &
Biases) gets the figures as images; every logger (CSV, W&B, MLflow, TensorBoard's own run) gets
``{prefix}/{method}/{metric}`` through ``pl_module.log``. Figures are drawn on rank 0 only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._metrics import chart_title
from dave_lightning.callbacks._probe import Probe, rank_positions
from dave_lightning.callbacks._runs import MethodRuns, writer_of
from dave_lightning.metrics.functional import deletion_fractions
from dave_lightning.viz import (
    attribution_figure,
    deletion_curves_figure,
    sensitivity_figure,
    to_display,
)

if TYPE_CHECKING:
    from dave_lightning.calibration import SensitivityCurve
    from dave_lightning.callbacks._evaluation import MethodScores, Outcome

__all__ = [
    "custom_scalars_layout",
    "epoch_scalars",
    "figure_to_array",
    "figures_by_epoch",
    "gather_figure_maps",
    "log_epoch_figures",
    "log_figure",
    "logging_step",
    "send_scalars",
    "sensitivity_scalars",
]

SENSITIVITY = "noise_sensitivity"
"""Name of DAVE's noise-sensitivity curve under its method (``{prefix}/dave/noise_sensitivity``)."""
SENSITIVITY_TITLE = "DAVE noise sensitivity: retained target score per noise level t"


def logging_step(trainer: Any) -> int:
    """The step Lightning logs this validation's epoch metrics at.

    Scalars go through Lightning's logging, which uses its count of optimizer steps taken
    (inside ``fit`` one less than ``trainer.global_step`` while validating); figures use the same
    step so they line up. Falls back to ``trainer.global_step``.
    """
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(epoch_loop, "_batches_that_stepped", None)
    return int(step) if isinstance(step, int) else int(trainer.global_step)


def epoch_scalars(
    prefix: str, results: Mapping[str, MethodScores], seconds: float
) -> dict[str, float]:
    """Tag to value: the run time, every finite score, and each method's non-finite map count.

    Example:
        >>> from dave_lightning.callbacks._evaluation import MethodScores
        >>> scores = MethodScores({"grid_pg": 0.5, "energy_pg": float("nan")}, num_nan=2)
        >>> epoch_scalars("explain", {"dave": scores}, 1.5)
        {'explain/time_s': 1.5, 'explain/dave/grid_pg': 0.5, 'explain/dave/num_nan': 2.0}
    """
    scalars: dict[str, float] = {f"{prefix}/time_s": seconds}
    for method, scores in results.items():
        for metric, value in scores.scalars.items():
            if value == value:  # not NaN
                scalars[f"{prefix}/{method}/{metric}"] = value
        if scores.num_nan:
            scalars[f"{prefix}/{method}/num_nan"] = float(scores.num_nan)
    return scalars


def _level_name(level: float) -> str:
    """``t_0.30`` for the level 0.3: two decimals unless the level needs more."""
    text = f"{level:.2f}"
    return f"t_{text}" if abs(float(text) - level) < 1e-9 else f"t_{level:.6g}"


def sensitivity_scalars(curve: SensitivityCurve) -> dict[str, float]:
    """DAVE's noise-sensitivity curve as scalars: per level, the retained fraction of the score.

    Names avoid ``=`` and other characters some loggers (MLflow) rewrite.

    Example:
        >>> from types import SimpleNamespace
        >>> import torch
        >>> curve = SimpleNamespace(levels=torch.tensor([0.3, 0.125], dtype=torch.float64),
        ...                         retained=torch.tensor([0.75, 0.5]))
        >>> sensitivity_scalars(curve)
        {'noise_sensitivity/t_0.30': 0.75, 'noise_sensitivity/t_0.125': 0.5}
    """
    levels, retained = curve.levels.tolist(), curve.retained.tolist()
    return {
        f"{SENSITIVITY}/{_level_name(level)}": float(value)
        for level, value in zip(levels, retained, strict=True)
    }


def custom_scalars_layout(
    prefix: str, metrics: Sequence[str], deletion_order: str, noise_sensitivity: bool = False
) -> dict[str, dict[str, list[Any]]]:
    """A TensorBoard custom-scalars layout: per metric one chart whose title gives the direction.

    The scores live in one run per method under method-free tags (``explain/grid_pg`` in the runs
    ``dave``, ``gradient``, ...), so each chart's tag pattern matches every method's run and
    TensorBoard colours the lines by run. The prefix is matched literally (regex-escaped), so
    e.g. ``"val.explain"`` does not also match ``"valXexplain"``. With ``noise_sensitivity``
    (``noise_alpha="auto"``) one more chart holds DAVE's sensitivity curve, one line per level.

    Example:
        >>> layout = custom_scalars_layout("explain", ["grid_pg"], "most_relevant_first")
        >>> layout["explain"]["GridPG (grid pointing game) (higher is better)"]
        ['Multiline', ['^explain/grid_pg$']]
    """
    pattern = re.escape(prefix)
    charts = {
        chart_title(metric, deletion_order): ["Multiline", [f"^{pattern}/{re.escape(metric)}$"]]
        for metric in metrics
    }
    if noise_sensitivity:
        charts[SENSITIVITY_TITLE] = ["Multiline", [f"^{pattern}/{SENSITIVITY}/"]]
    return {prefix: charts}


def send_scalars(trainer: Any, runs: MethodRuns, prefix: str, scalars: Mapping[str, float]) -> None:
    """Rank 0: every method's scores into its own TensorBoard run, one tag per metric.

    At the step Lightning logs the epoch's validation metrics (so lines up with them). Every
    logger, TensorBoard's own run included, also gets ``{prefix}/{method}/{metric}`` through
    Lightning's ``log_metrics`` (the monitor logs them with ``pl_module.log_dict``): that is what
    ``trainer.validate`` returns and what checkpoint and early-stopping monitors read, and
    Lightning sends logged values to every logger or to none.
    """
    runs.write(trainer.loggers, prefix, scalars, logging_step(trainer))


def figure_to_array(figure: Any) -> np.ndarray:
    """Render a matplotlib figure to an ``(H, W, 3)`` uint8 array (on its own Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def log_figure(
    loggers: Iterable[Any],
    tag: str,
    figure: Any,
    step: int,
    save_as: Path | None = None,
    epoch: int | None = None,
) -> None:
    """Send a figure to every logger that takes images (and to ``save_as``), then free it.

    TensorBoard indexes it by ``epoch`` when given (the Images tab's slider then reads in epochs);
    other image loggers (W&B, which needs steps that never go back) get it at ``step``.
    """
    try:
        if save_as is not None:
            save_as.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(save_as, dpi=100)
        image = None
        for logger in loggers:
            writer = writer_of(logger)
            if writer is not None:
                index = step if epoch is None else epoch
                writer.add_figure(tag, figure, global_step=index, close=False)
                writer.flush()
            elif callable(getattr(logger, "log_image", None)):
                image = figure_to_array(figure) if image is None else image
                logger.log_image(key=tag, images=[image], step=step)
    finally:
        figure.clear()  # a figure outside pyplot: nothing to close


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


def figures_by_epoch(trainer: Any, config: MonitorConfig) -> bool:
    """Whether figures are indexed by epoch: the monitor explains at most once per epoch.

    That is with ``every_n_epochs``, or when the trainer validates at the end of epochs only
    (``val_check_interval=1.0``, the default). Otherwise (``val_check_interval=0.25``, a number
    of batches, a time) figures are indexed by the step of the evaluation's scalars: TensorBoard
    keeps one image per tag and step, so by epoch it would show only the last evaluation of each.

    Example:
        >>> from types import SimpleNamespace
        >>> config = SimpleNamespace(every_n_epochs=None)
        >>> figures_by_epoch(SimpleNamespace(val_check_interval=1.0), config)
        True
        >>> figures_by_epoch(SimpleNamespace(val_check_interval=0.25), config)
        False
    """
    if config.every_n_epochs is not None:
        return True
    interval = getattr(trainer, "val_check_interval", 1.0)
    return isinstance(interval, float) and interval >= 1.0


def _png(config: MonitorConfig, name: str, trainer: Any, step: int | None) -> Path | None:
    """``{name}_epoch{E}.png``, or ``{name}_epoch{E}_step{S}.png`` for figures indexed by step."""
    if config.figure_dir is None:
        return None
    suffix = "" if step is None else f"_step{step:07d}"
    return Path(config.figure_dir) / f"{name}_epoch{trainer.current_epoch:03d}{suffix}.png"


def log_epoch_figures(
    trainer: Any,
    config: MonitorConfig,
    probe: Probe,
    network: nn.Module,
    outcome: Outcome,
    display_stats: tuple[Any, Any],
    sensitivity: tuple[SensitivityCurve, float | None] | None = None,
) -> None:
    """Log this evaluation's figures to every logger that takes images (and to ``figure_dir``).

    Up to three figures, indexed by epoch or by the scalars' step (:func:`figures_by_epoch`):
    ``{log_prefix}/overlays`` (the first probe images with each method's map),
    ``{log_prefix}/deletion_curves`` (every method's mean deletion curve and the random-order
    reference, when deletion is measured) and, with ``noise_alpha="auto"``,
    ``{log_prefix}/dave/noise_sensitivity`` (DAVE's sensitivity curve and the chosen level; the
    curve is also logged as scalars, with or without figures).

    Args:
        trainer: The Lightning trainer (its loggers, epoch and step).
        config: The monitor's options.
        probe: The probe set whose first images are drawn.
        network: The classifier, for the overlay titles' predictions (modes are restored by the
            caller).
        outcome: This evaluation's scores, deletion reference and figure maps (not empty).
        display_stats: Mean and std that map probe images back to display space.
        sensitivity: DAVE's last sensitivity curve and the level in use, or ``None``.
    """
    figure_maps = outcome.figure_maps
    count = next(iter(figure_maps.values())).shape[0]
    parameter = next(network.parameters())
    images = probe.images[:count].to(parameter.device, parameter.dtype)
    titles = _row_titles(network, images, probe.labels[:count])
    step, prefix = logging_step(trainer), config.log_prefix
    by_epoch = figures_by_epoch(trainer, config)
    epoch = trainer.current_epoch if by_epoch else None

    def send(name: str, tag: str, figure: Any) -> None:
        png = _png(config, name, trainer, None if by_epoch else step)
        log_figure(trainer.loggers, f"{prefix}/{tag}", figure, step, png, epoch)

    boxes = None if probe.boxes is None else probe.boxes[:count]
    display = to_display(images, *display_stats)
    send("overlays", "overlays", attribution_figure(display, figure_maps, titles, boxes=boxes))
    results = outcome.results
    curves = {m: s.deletion_curve for m, s in results.items() if s.deletion_curve is not None}
    if curves:
        fractions = deletion_fractions(
            config.deletion_steps, config.deletion_max_fraction, dtype=torch.float32
        )
        aucs = {m: s.scalars.get("deletion_auc", float("nan")) for m, s in results.items()}
        title = chart_title("deletion_auc", config.deletion_order)
        figure = deletion_curves_figure(
            fractions, curves, outcome.reference, title=title, aucs=aucs
        )
        send("deletion_curves", "deletion_curves", figure)
    if sensitivity is not None:
        curve, used = sensitivity
        send("noise_sensitivity", "dave/noise_sensitivity", sensitivity_figure(curve, used=used))
