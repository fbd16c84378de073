"""The monitor's own progress bar: its evaluation can take much longer than an epoch's training.

A ``tqdm`` bar on stderr, one step per stage of the evaluation (calibration, each method's
attribution and metrics, the grids, the random-order reference), with tqdm's elapsed time and ETA.
Shown on rank 0 only, and only when the trainer shows its own progress bar
(``trainer.progress_bar_callback is not None``, i.e. not ``enable_progress_bar=False``).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["EvaluationProgress"]

DESCRIPTION = "AttributionMonitor"


class EvaluationProgress:
    """A bar of ``total`` steps, or nothing at all when ``enabled`` is false.

    Example:
        >>> bar = EvaluationProgress(False, total=3)
        >>> bar.advance("dave attribution")
        >>> bar.close()
    """

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(
                total=total,
                desc=DESCRIPTION,
                unit="step",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
                mininterval=0,  # a handful of slow steps: draw every one, the last included
            )

    @classmethod
    def for_trainer(cls, trainer: Any, total: int) -> EvaluationProgress:
        """Shown on rank 0 when the trainer has a progress bar."""
        shown = bool(trainer.is_global_zero) and trainer.progress_bar_callback is not None
        return cls(shown, total)

    def advance(self, label: str) -> None:
        """One step done; ``label`` names it (shown after the bar)."""
        if self._bar is not None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(1)

    def shrink(self, steps: int) -> None:
        """Drop ``steps`` that will not run (e.g. GridPG without grids)."""
        if self._bar is not None and steps:
            self._bar.total = max(self._bar.n, self._bar.total - steps)
            self._bar.refresh()

    def close(self) -> None:
        """Remove the bar (``leave=False``)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
