"""When the monitor explains: which of ``fit``'s validation runs, and schedules that cannot run.

By default every validation run of ``fit`` is explained (the end-of-epoch ones, the mid-epoch
ones of ``val_check_interval=0.5`` and the step-based ones of ``check_val_every_n_epoch=None``),
never the sanity check. Two options thin that out; they exclude each other:

* ``every_n_validations=k``: the k-th, 2k-th, ... validation run of ``fit`` (counted over the
  whole run, resumed runs included).
* ``every_n_epochs=n``: once per n epochs, at the first validation run that comes at or after the
  end of epoch n, 2n, ... (with one validation per epoch: the validations of epochs n, 2n, ...;
  with ``check_val_every_n_epoch=2`` and ``n=3``: the validations after epochs 4, 6, 10, 12, ...).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Schedule", "schedule_warnings"]


def _is_end_of_epoch(trainer: Any) -> bool:
    """Whether this validation runs after the epoch's last training batch."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if loop is None:
        return True
    if getattr(getattr(loop, "batch_progress", None), "is_last_batch", False):
        return True
    batches = getattr(trainer, "num_training_batches", math.inf)
    return math.isfinite(batches) and getattr(loop, "batch_idx", -1) + 1 >= batches


@dataclass
class Schedule:
    """Counts ``fit``'s validation runs and says which ones the monitor explains.

    Args:
        every_n_epochs: Once per this many epochs, or ``None``.
        every_n_validations: Every this many validation runs, or ``None``.
        validations: Validation runs of ``fit`` seen so far (the sanity check not counted).
        last_block: How many ``every_n_epochs`` blocks of epochs are already explained.

    Example:
        >>> schedule = Schedule(every_n_validations=2)
        >>> [schedule.count_and_check(epochs_done=0) for _ in range(4)]
        [False, True, False, True]
        >>> schedule = Schedule(every_n_epochs=3)
        >>> [schedule.count_and_check(epochs_done=done) for done in (1, 2, 3, 4, 5, 6)]
        [False, False, True, False, False, True]
    """

    every_n_epochs: int | None = None
    every_n_validations: int | None = None
    validations: int = 0
    last_block: int = 0

    def count_and_check(self, epochs_done: int) -> bool:
        """Count one validation run of ``fit``; whether to explain it.

        Args:
            epochs_done: Training epochs complete when this validation runs (the current epoch
                counts when the validation comes after its last batch).
        """
        self.validations += 1
        if self.every_n_validations is not None:
            return self.validations % self.every_n_validations == 0
        if self.every_n_epochs is not None:
            block = epochs_done // self.every_n_epochs
            if block <= self.last_block:
                return False
            self.last_block = block
        return True

    def due(self, trainer: Any) -> bool:
        """Count this validation run of ``fit`` and say whether to explain it."""
        epochs_done = int(trainer.current_epoch) + int(_is_end_of_epoch(trainer))
        return self.count_and_check(epochs_done)

    def state(self) -> dict[str, int]:
        """The counters, for checkpoints."""
        return {"validations": self.validations, "last_block": self.last_block}

    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (missing keys keep their values)."""
        values = asdict(self) | {key: int(value) for key, value in state.items()}
        self.validations, self.last_block = values["validations"], values["last_block"]


def _finite(value: Any) -> float:
    """``value`` as a number, with ``None`` and negatives (Lightning's "no limit") as infinity."""
    return math.inf if value is None or value < 0 else float(value)


def _training_bounds(trainer: Any) -> tuple[float, float]:
    """Upper bounds on the training batches and epochs of this ``fit`` (infinity: unknown)."""
    batches_per_epoch = float(getattr(trainer, "num_training_batches", math.inf))
    max_epochs = _finite(getattr(trainer, "max_epochs", None))
    max_steps = _finite(getattr(trainer, "max_steps", None))
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    batches = min(max_steps * accumulate, max_epochs * batches_per_epoch)
    if math.isfinite(batches) and batches_per_epoch > 0 and math.isfinite(batches_per_epoch):
        max_epochs = min(max_epochs, math.ceil(batches / batches_per_epoch))
    return batches, max_epochs


def most_validations(trainer: Any) -> float:
    """An upper bound on the validation runs of this ``fit`` (infinity when unknown).

    Needs ``trainer.num_training_batches`` and ``trainer.val_check_batch`` (set once the training
    data is loaded).
    """
    if getattr(trainer, "_val_check_time_interval", None) is not None:
        return math.inf  # validation by wall-clock time
    batches, epochs = _training_bounds(trainer)
    interval = float(getattr(trainer, "val_check_batch", None) or math.inf)
    every_epochs = getattr(trainer, "check_val_every_n_epoch", 1)
    if every_epochs is None:  # by training batches, across epochs
        return math.floor(batches / interval) + 1 if math.isfinite(interval) else math.inf
    per_epoch = float(getattr(trainer, "num_training_batches", math.inf))
    runs_per_epoch = max(1, math.floor(per_epoch / interval)) if math.isfinite(interval) else 1
    # +1: a run stopped by `max_steps` or early stopping may validate once more
    return math.floor(epochs / every_epochs) * runs_per_epoch + 1


def schedule_warnings(trainer: Any, schedule: Schedule, num_val_batches: float | None) -> list[str]:
    """Why the monitor's schedule can never explain anything in this ``fit`` (empty: it can).

    Args:
        trainer: The Lightning trainer, its training data loaded.
        schedule: The monitor's schedule.
        num_val_batches: Batches of the monitor's validation loader (``None``: unknown).
    """
    reasons = []
    if num_val_batches == 0:
        reasons.append(
            "the validation loader at `dataloader_idx` yields no batches, so Lightning runs no "
            "validation and the monitor never runs"
        )
    _, epochs = _training_bounds(trainer)
    if schedule.every_n_epochs is not None and schedule.every_n_epochs > epochs:
        reasons.append(
            f"`every_n_epochs`={schedule.every_n_epochs} but this fit trains at most "
            f"{int(epochs)} epoch{'s' if epochs != 1 else ''}"
        )
    if schedule.every_n_validations is not None:
        most = most_validations(trainer)
        if schedule.every_n_validations > most:
            reasons.append(
                f"`every_n_validations`={schedule.every_n_validations} but this fit validates "
                f"at most {int(most)} time{'s' if most != 1 else ''}"
            )
    return reasons
