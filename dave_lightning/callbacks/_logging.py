"""Writing the monitor's results to whatever loggers the trainer has.

Loggers are recognised by what they can do, not by class, so the same code serves
``pytorch_lightning`` and ``lightning.pytorch`` trainers: a TensorBoard ``SummaryWriter`` as
``logger.experiment`` gets figures (indexed by epoch) and a custom-scalars layout, and the
scores go into one run per method beside it (:mod:`dave_lightning.callbacks._runs`); any logger
with ``log_image`` (e.g. Weights & Biases) gets the figures as images; every logger (CSV, W&B,
MLflow, TensorBoard's own run) gets ``{prefix}/{method}/{metric}`` through ``pl_module.log``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dave_lightning.callbacks._metrics import chart_title

if TYPE_CHECKING:
    from dave_lightning.calibration import SensitivityCurve
    from dave_lightning.callbacks._evaluation import MethodScores
    from dave_lightning.callbacks._runs import MethodRuns

__all__ = [
    "custom_scalars_layout",
    "epoch_scalars",
    "figure_to_array",
    "log_figure",
    "send_scalars",
    "sensitivity_scalars",
    "summary_writers",
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


def _writer_of(logger: Any) -> Any:
    experiment = getattr(logger, "experiment", None)
    if hasattr(experiment, "add_figure") and hasattr(experiment, "add_custom_scalars"):
        return experiment
    return None


def summary_writers(loggers: Iterable[Any]) -> list[Any]:
    """The TensorBoard ``SummaryWriter`` of every logger that has one."""
    return [writer for writer in map(_writer_of, loggers) if writer is not None]


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
            writer = _writer_of(logger)
            if writer is not None:
                index = step if epoch is None else epoch
                writer.add_figure(tag, figure, global_step=index, close=False)
                writer.flush()
            elif callable(getattr(logger, "log_image", None)):
                image = figure_to_array(figure) if image is None else image
                logger.log_image(key=tag, images=[image], step=step)
    finally:
        figure.clear()  # a figure outside pyplot: nothing to close
