"""NoiseLevel: DAVE's automatic level kept across evaluations, its scalars and checkpoint state."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dave_lightning.baselines.gradient import Gradient
from dave_lightning.callbacks._noise_level import NoiseLevel
from dave_lightning.dave import DAVE
from tests.helpers import tiny_vit


class _StubDAVE(SimpleNamespace):
    """Answers `calibrate` with the levels it is given, one per call, and records the calls."""

    def __init__(self, levels: list[float]) -> None:
        super().__init__(noise_alpha=None, calibration=None, calls=[])
        self.levels = list(levels)

    def calibrate(self, images: Any, targets: Any, *, image_ids: Any) -> float:
        self.calls.append(image_ids)
        return self.levels.pop(0)


@pytest.mark.parametrize(("recalibrate", "used"), [(False, [0.3, 0.3]), (True, [0.3, 0.5])])
def test_the_first_level_is_kept_unless_recalibrating(recalibrate: bool, used: list[float]) -> None:
    level = NoiseLevel(auto=True, recalibrate_every_evaluation=recalibrate)
    dave: Any = _StubDAVE([0.3, 0.5])
    ids = torch.tensor([4, 7])
    seen = []
    for _ in range(2):
        level.calibrate(dave, torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), ids)
        seen.append((dave.noise_alpha, level.fixed, level.recalibrated))
    assert [alpha for alpha, _, _ in seen] == used
    assert [fixed for _, fixed, _ in seen] == used
    assert [again for _, _, again in seen] == [0.3, 0.5]  # the drift signal, always the new one
    assert all(call is ids for call in dave.calls)


def test_a_restored_level_is_used_instead_of_the_first_calibration() -> None:
    level = NoiseLevel(auto=True, recalibrate_every_evaluation=False)
    level.load({"fixed_noise_alpha": 0.55})
    dave: Any = _StubDAVE([0.3])
    level.calibrate(dave, torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long), torch.ones(1))
    assert (dave.noise_alpha, level.recalibrated) == (0.55, 0.3)


def test_the_state_uses_the_checkpoint_key_of_earlier_versions() -> None:
    level = NoiseLevel(auto=True, recalibrate_every_evaluation=False)
    assert level.state() == {"fixed_noise_alpha": None}
    level.load({"fixed_noise_alpha": torch.tensor(0.25), "history": []})  # any number
    assert level.state() == {"fixed_noise_alpha": 0.25}
    assert isinstance(level.fixed, float)
    level.load({})  # a checkpoint from a run without a level
    assert level.fixed is None


def test_scalars_hold_the_level_in_use_and_the_recalibrated_one() -> None:
    level = NoiseLevel(auto=True, recalibrate_every_evaluation=False)
    dave: Any = _StubDAVE([])
    assert level.scalars(dave) == {}  # no level yet: nothing to log
    dave.noise_alpha = 0.4
    assert level.scalars(dave) == {"noise_alpha": 0.4}
    level.recalibrated = 0.6
    assert level.scalars(dave) == {"noise_alpha": 0.4, "noise_alpha_recalibrated": 0.6}


def test_only_a_dave_attributor_under_auto_is_calibrated() -> None:
    model = tiny_vit(img_size=16, num_classes=3, seed=0)
    dave = DAVE(model, num_samples=2, noise_alpha="auto")
    attributors = {"dave": dave, "gradient": Gradient(model)}
    assert NoiseLevel(True, False).dave(attributors) is dave
    assert NoiseLevel(False, False).dave(attributors) is None
    assert NoiseLevel(True, False).dave({"gradient": Gradient(model)}) is None
