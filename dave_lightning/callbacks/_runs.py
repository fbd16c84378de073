"""One TensorBoard run per method, so every chart overlays the methods in TensorBoard's colours.

Next to each TensorBoard logger's run (``<log_dir>``) the monitor opens one ``SummaryWriter`` per
method (``<log_dir>/dave``, ``<log_dir>/gradient``, ``<log_dir>/random_order``) and writes the
method's scores under one tag per metric (``explain/energy_pg``): TensorBoard draws every run of a
tag on the same chart, with its own colour per run and the run names as legend. Rank 0 only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MethodRuns", "split_by_method", "summary_writers", "writer_of"]


def writer_of(logger: Any) -> Any:
    """The TensorBoard ``SummaryWriter`` of a logger, or ``None`` when it has none."""
    experiment = getattr(logger, "experiment", None)
    if hasattr(experiment, "add_figure") and hasattr(experiment, "add_custom_scalars"):
        return experiment
    return None


def summary_writers(loggers: Iterable[Any]) -> list[Any]:
    """The TensorBoard ``SummaryWriter`` of every logger that has one."""
    return [writer for writer in map(writer_of, loggers) if writer is not None]


def split_by_method(prefix: str, scalars: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Per method its scalars under method-free tags: ``explain/dave/x`` becomes ``explain/x``.

    Tags without a method (``explain/time_s``) are left out.

    Example:
        >>> split_by_method("explain", {"explain/time_s": 2.0, "explain/dave/grid_pg": 0.5,
        ...                             "explain/dave/noise_sensitivity/t_0.30": 0.75})
        {'dave': {'explain/grid_pg': 0.5, 'explain/noise_sensitivity/t_0.30': 0.75}}
    """
    runs: dict[str, dict[str, float]] = {}
    start = f"{prefix}/"
    for tag, value in scalars.items():
        if not tag.startswith(start):
            continue
        method, separator, metric = tag[len(start) :].partition("/")
        if separator:
            runs.setdefault(method, {})[f"{prefix}/{metric}"] = value
    return runs


def _log_dir(writer: Any) -> Path | None:
    folder = getattr(writer, "log_dir", None) or getattr(writer, "logdir", None)
    if folder is None and callable(getattr(writer, "get_logdir", None)):
        folder = writer.get_logdir()
    return None if folder is None else Path(folder)


class MethodRuns:
    """The per-method ``SummaryWriter`` s of one monitor, opened lazily, closed by :meth:`close`.

    A writer of the same class as the logger's (``torch.utils.tensorboard`` or tensorboardX) is
    opened per TensorBoard logger and method, in a sub-folder of the logger's run named after the
    method.
    """

    def __init__(self) -> None:
        self._writers: dict[tuple[Path, str], Any] = {}

    def write(
        self, loggers: Iterable[Any], prefix: str, scalars: Mapping[str, float], step: int
    ) -> None:
        """Write each method's scalars into its run, at ``step``, and flush (so TB sees them)."""
        per_method = split_by_method(prefix, scalars)
        for logger_writer in summary_writers(loggers):
            folder = _log_dir(logger_writer)
            if folder is None:
                continue
            for method, values in per_method.items():
                writer = self._writer(logger_writer, folder, method)
                for tag, value in values.items():
                    writer.add_scalar(tag, value, global_step=step)
                writer.flush()

    def _writer(self, logger_writer: Any, folder: Path, method: str) -> Any:
        key = (folder, method)
        if key not in self._writers:
            self._writers[key] = type(logger_writer)(str(folder / method))
        return self._writers[key]

    @property
    def folders(self) -> list[Path]:
        """The run folders opened so far."""
        return [folder / method for folder, method in self._writers]

    def close(self) -> None:
        """Close every writer (never raises; a later :meth:`write` opens new ones)."""
        writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            with contextlib.suppress(Exception):  # closing must not mask the real outcome
                writer.close()
