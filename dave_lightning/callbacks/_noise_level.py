"""DAVE's automatic noise level (``noise_alpha="auto"``) kept across the monitor's evaluations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from dave_lightning.attributor import Attributor
from dave_lightning.callbacks._publish import sensitivity_scalars
from dave_lightning.dave import DAVE

__all__ = ["NoiseLevel"]


class NoiseLevel:
    """The level DAVE attributes with under ``noise_alpha="auto"``, and its drift.

    Args:
        auto: Whether the monitor's ``noise_alpha`` is ``"auto"`` (else this does nothing).
        recalibrate_every_evaluation: Use each evaluation's calibration instead of the first.

    Attributes:
        fixed: The level in use: the first calibration's (or the one a checkpoint restored);
            ``None`` before. Saved by :meth:`state`.
        recalibrated: What the last calibration chose, logged as a drift signal.
    """

    def __init__(self, auto: bool, recalibrate_every_evaluation: bool) -> None:
        self.auto = auto
        self.recalibrate_every_evaluation = recalibrate_every_evaluation
        self.fixed: float | None = None
        self.recalibrated: float | None = None

    def dave(self, attributors: Mapping[str, Attributor]) -> DAVE | None:
        """The DAVE attributor whose level this sets (``None`` unless ``noise_alpha="auto"``)."""
        attributor = attributors.get("dave")
        return attributor if self.auto and isinstance(attributor, DAVE) else None

    def calibrate(self, dave: DAVE, images: Tensor, targets: Tensor, image_ids: Tensor) -> None:
        """Measure DAVE's level on the whole probe (every rank alike) and set the one in use.

        The first level is kept (:attr:`fixed`) unless ``recalibrate_every_evaluation``; what
        this evaluation would choose is kept in :attr:`recalibrated`.
        """
        self.recalibrated = dave.calibrate(images, targets, image_ids=image_ids)
        if self.recalibrate_every_evaluation or self.fixed is None:
            self.fixed = self.recalibrated
        dave.noise_alpha = self.fixed

    def scalars(self, dave: DAVE) -> dict[str, float]:
        """DAVE's scalars for this evaluation (none while DAVE has no level).

        The level in use (``noise_alpha``), what a re-calibration now chooses
        (``noise_alpha_recalibrated``) and the sensitivity curve (``noise_sensitivity/t_0.30``:
        retained score per level).
        """
        if dave.noise_alpha is None:
            return {}
        scalars = {"noise_alpha": dave.noise_alpha}
        if self.recalibrated is not None:
            scalars["noise_alpha_recalibrated"] = self.recalibrated
        if dave.calibration is not None:
            scalars.update(sensitivity_scalars(dave.calibration))
        return scalars

    def state(self) -> dict[str, Any]:
        """The level in use, under the checkpoint key ``fixed_noise_alpha``."""
        return {"fixed_noise_alpha": self.fixed}

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (a missing key leaves no level: the next calibration's)."""
        fixed = state.get("fixed_noise_alpha")
        self.fixed = None if fixed is None else float(fixed)
