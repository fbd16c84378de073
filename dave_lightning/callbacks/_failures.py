"""Failure handling of the monitor: every step guarded, failures counted, logged, warned about."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch

from dave_lightning.errors import DaveError

__all__ = ["AbandonedError", "FailureGuard", "MonitorError"]

_T = TypeVar("_T")


class MonitorError(DaveError, RuntimeError):
    """An evaluation pass of the monitor failed (raised when ``on_error="raise"``)."""


class AbandonedError(Exception):
    """A stage of the evaluation failed on some process; the rest of this evaluation is skipped."""


def _failed_anywhere(trainer: Any, failure: BaseException | None) -> bool:
    flag = torch.tensor(float(failure is not None))
    if trainer.world_size > 1:
        flag = trainer.strategy.reduce(flag.to(trainer.strategy.root_device), reduce_op="sum")
    return bool(flag.item() > 0)


class FailureGuard:
    """Runs the monitor's steps so that a failure never stops training unless asked to.

    With ``on_error="warn"`` a failure is counted, warned about and (by :meth:`log_count`)
    logged; with ``"raise"`` it is raised as :class:`MonitorError` with the cause attached.

    Args:
        on_error: ``"warn"`` or ``"raise"``.
        log_prefix: Tag prefix; the count is logged as ``{log_prefix}/failures``.
    """

    def __init__(self, on_error: str, log_prefix: str) -> None:
        self.on_error = on_error
        self.log_prefix = log_prefix
        self.count = 0
        self._warned: set[tuple[str, str]] = set()

    def agreed(self, trainer: Any, stage: Callable[[], _T]) -> _T:
        """Run a stage on every process; when it failed on any, report it and abandon.

        The failure flag is agreed on with a collective, so every process takes the same branch
        and none waits in a collective the others skipped. Only for stages every process runs.

        Raises:
            AbandonedError: When the stage failed on some process (after reporting it).
            MonitorError: Instead, with ``on_error="raise"``.
        """
        failure: Exception | None = None
        value: _T | None = None
        try:
            value = stage()
        except Exception as error:  # reported below, on every rank
            failure = error
        if _failed_anywhere(trainer, failure):
            self.report(trainer, failure)
            raise AbandonedError
        return cast(_T, value)

    def locally(self, trainer: Any, step: Callable[[], None]) -> bool:
        """Run a step that involves no other process (e.g. rank 0's figures), reporting failures.

        No agreement here: the other processes do not run the step, so a collective would
        deadlock.

        Returns:
            Whether the step succeeded.
        """
        try:
            step()
        except Exception as error:
            self.report(trainer, error)
            return False
        return True

    def report(self, trainer: Any, failure: BaseException | None) -> None:
        """Count a failure; raise it (``"raise"``) or warn that training goes on (``"warn"``)."""
        self.count += 1
        where = f"{type(failure).__name__}: {failure}" if failure else "failed on another process"
        message = (
            f"AttributionMonitor: the evaluation at epoch {trainer.current_epoch} failed ({where})"
        )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.on_error == "raise":
            raise MonitorError(message) from failure
        warnings.warn(message + "; training goes on.", RuntimeWarning, stacklevel=3)

    def report_result(
        self,
        trainer: Any,
        result: str,
        failure: BaseException,
        consequence: str = "it is left out of this evaluation, the other results are logged",
    ) -> None:
        """Count one failed result (e.g. ``"dave/deletion_auc"``); warn once per kind.

        A kind is the result and the exception's type: later failures of that kind are counted
        in ``{log_prefix}/failures`` without another warning.
        """
        self.count += 1
        kind = (result, type(failure).__name__)
        if kind in self._warned:
            return
        self._warned.add(kind)
        warnings.warn(
            f"AttributionMonitor: {result} failed at epoch {trainer.current_epoch} "
            f"({type(failure).__name__}: {failure}); {consequence}, and training goes on. Further "
            f"failures of this kind are counted in {self.log_prefix}/failures without a warning.",
            RuntimeWarning,
            stacklevel=3,
        )

    def log_count(self, pl_module: Any) -> None:
        """Log ``{log_prefix}/failures``, the running count, when there are any (never raises)."""
        if not self.count:
            return
        try:
            pl_module.log(
                f"{self.log_prefix}/failures",
                float(self.count),
                on_step=False,
                on_epoch=True,
                batch_size=1,
            )
        except Exception as error:
            message = f"AttributionMonitor: the failure count could not be logged ({error!r})"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
