"""Fail small: one failing method or metric leaves the others' results (issue 15, item 7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from dave_lightning.baselines.gradient import Gradient
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.metrics import EnergyPointingGame
from dave_lightning.metrics.functional import energy_pointing_game
from dave_lightning.registry import _REGISTRY, register_attributor
from tests.callbacks.helpers import FAST, TinyClassifier, loaders, trainer

METRICS = ["grid_pg", "energy_pg", "deletion_auc"]


class _Broken(Gradient):
    def _attribute(self, images: torch.Tensor, targets: torch.Tensor, image_ids: list[int]) -> Any:
        raise ValueError("broken method (simulated)")


@pytest.fixture
def broken() -> Iterator[None]:
    register_attributor("broken", _Broken, overwrite=True)
    yield
    _REGISTRY.pop("broken")


def _fit(root: Path, monitor: AttributionMonitor) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    run = trainer(root, [monitor], logger=False)
    run.fit(TinyClassifier(), *loaders())
    return run


@pytest.mark.slow
def test_a_failing_method_leaves_the_other_methods_results(
    tmp_path: Path, broken: None, recwarn: pytest.WarningsRecorder
) -> None:
    monitor = AttributionMonitor(methods=["gradient", "broken"], **FAST)
    run = _fit(tmp_path, monitor)
    assert len(monitor.history) == 2
    for row in monitor.history:
        assert {f"explain/gradient/{metric}" for metric in METRICS} <= set(row)
        assert not any(key.startswith("explain/broken/") for key in row)
    # per evaluation: the probe maps and the grid maps of "broken"
    assert monitor.num_failures == 4
    assert run.callback_metrics["explain/failures"] == 4.0
    messages = [str(w.message) for w in recwarn if "broken method" in str(w.message)]
    assert len(messages) == 2  # once per kind, not once per evaluation
    assert any("broken/attribution failed" in message for message in messages)
    assert any("broken/grid_pg failed" in message for message in messages)


@pytest.mark.slow
def test_a_failing_metric_leaves_the_other_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    def _raise(*_: Any, **__: Any) -> None:
        raise ValueError("broken metric (simulated)")

    monkeypatch.setattr(EnergyPointingGame, "update", _raise)
    monitor = AttributionMonitor(methods=["gradient", "random"], **FAST)
    _fit(tmp_path, monitor)
    for row in monitor.history:
        for method in ("gradient", "random"):
            assert f"explain/{method}/grid_pg" in row
            assert f"explain/{method}/deletion_auc" in row
            assert f"explain/{method}/energy_pg" not in row
    assert monitor.num_failures == 4  # two methods, two evaluations
    assert len([w for w in recwarn if "broken metric" in str(w.message)]) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_energy_pg_of_half_precision_maps_matches_a_float64_reference(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    # 64x64 values near float16's largest: a float16 sum overflows to inf (inf / inf = NaN)
    maps = (torch.rand(3, 64, 64, generator=generator) * 60000.0 - 10000.0).to(dtype)
    boxes = [torch.tensor([[0.0, 0.0, 32.0, 40.0]]) for _ in range(3)]
    wide = maps.double().clamp(min=0)
    expected = wide[:, :40, :32].sum(dim=(1, 2)) / wide.sum(dim=(1, 2))
    scores = energy_pointing_game(maps, boxes)
    assert scores.dtype == dtype
    assert torch.isfinite(scores).all()
    tolerance = 2e-3 if dtype == torch.float16 else 1e-2  # the score's own rounding
    assert torch.allclose(scores.double(), expected, atol=tolerance)
    metric = EnergyPointingGame()
    metric.update(maps, boxes)
    assert float(metric.compute()) == pytest.approx(float(expected.mean()), abs=tolerance)
    assert metric.num_nan == 0
