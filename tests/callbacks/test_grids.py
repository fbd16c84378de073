"""Grids: the monitor's GridPG grids built once per probe (or per evaluation) and shared out."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dave_lightning.callbacks import _grids
from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._grids import Grids, GridSet, build_grid_set
from dave_lightning.callbacks._probe import Probe
from tests.helpers import tiny_vit

CPU = torch.device("cpu")


def _probe(labels: list[int]) -> Probe:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(len(labels), 3, 16, 16, generator=generator)
    return Probe(images, torch.tensor(labels), torch.arange(len(labels)))


def _share(grids: Grids, probe: Probe, rank: int = 0, world_size: int = 1) -> GridSet | None:
    trainer = SimpleNamespace(global_rank=rank, world_size=world_size)
    network = tiny_vit(img_size=16, num_classes=4, seed=0)
    return grids.share(trainer, probe, network, CPU, torch.float32)


def test_grids_are_built_once_per_probe_and_shared_by_rank() -> None:
    grids = Grids(MonitorConfig(metrics=("grid_pg",), max_grids=3))
    probe = _probe([0, 1, 2, 3] * 3)
    first = _share(grids, probe)
    built = grids.grid_set
    assert built is not None
    assert first is not None
    assert len(built) == len(first) == 3
    second = _share(grids, probe, rank=1, world_size=2)
    assert grids.grid_set is built  # not rebuilt for the same probe
    assert second is not None
    assert torch.equal(second.images, built.images[1::2])
    grids.forget()
    _share(grids, probe)
    assert grids.grid_set is not built


@pytest.mark.filterwarnings("ignore:AttributionMonitor. GridPG is skipped")
def test_a_confidence_filter_rebuilds_at_every_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = []

    def counting(*args: Any) -> Any:
        builds.append(args[0])
        return build_grid_set(*args)

    monkeypatch.setattr(_grids, "build_grid_set", counting)
    grids = Grids(MonitorConfig(metrics=("grid_pg",), max_grids=3, grid_min_confidence=0.0))
    probe = _probe([0, 1, 2, 3] * 3)
    _share(grids, probe)
    _share(grids, probe)
    assert builds == [probe, probe]  # the network changes between evaluations


def test_no_grid_pg_metric_builds_nothing() -> None:
    grids = Grids(MonitorConfig(metrics=("energy_pg",)))
    assert _share(grids, _probe([0, 1, 2, 3])) is None
    assert grids.grid_set is None


def test_grids_that_cannot_be_formed_are_warned_about_once() -> None:
    grids = Grids(MonitorConfig(metrics=("grid_pg",)))
    probe = _probe([0, 1, 0, 1])  # two classes: no 2x2 grid of distinct classes
    with pytest.warns(UserWarning, match="GridPG is skipped: no 2x2 grid can be formed"):
        assert _share(grids, probe) is None
    grids.forget()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _share(grids, probe) is None
