"""Failures anywhere in an evaluation never stop training; misconfigured validation fails fast."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from dave_lightning import ConfigurationError
from dave_lightning.callbacks import AttributionMonitor, MonitorError
from dave_lightning.callbacks._evaluation import Evaluation
from dave_lightning.callbacks._hooks import MonitorHooks
from dave_lightning.callbacks._publish import custom_scalars_layout
from tests.callbacks.helpers import FAST, BoxedImages, TinyClassifier, loaders, trainer

QUICK = dict(FAST, methods=["gradient"], metrics=["energy_pg", "deletion_auc"])


def _raise(*_: Any, **__: Any) -> Any:
    raise ValueError("broken step (simulated)")


def _disk_full(*_: Any, **__: Any) -> Any:
    raise OSError("disk full (simulated)")


class _NoScalarLogging(TinyClassifier):
    def log_dict(self, dictionary: Any, *args: Any, **kwargs: Any) -> None:
        if any(str(key).startswith("explain/") for key in dictionary):
            raise ValueError("broken step (simulated)")
        super().log_dict(dictionary, *args, **kwargs)


def _break(step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Make one step of the evaluation fail; return the monitor options that lead there."""
    if step == "metric compute":
        monkeypatch.setattr(Evaluation, "compute", _raise)
    elif step == "gathering overlay maps":
        monkeypatch.setattr(MonitorHooks, "_gather_figure_maps", _raise)
    elif step == "figure drawing":  # the overlays' extra model forward, then matplotlib
        monkeypatch.setattr("dave_lightning.callbacks._publish.attribution_figure", _raise)
        return {"figure_dir": str(tmp_path / "png")}  # figures are drawn without a logger too
    elif step == "png writing":  # a figure_dir that is a file fails at construction instead
        monkeypatch.setattr(Figure, "savefig", _disk_full)
        return {"figure_dir": str(tmp_path / "png")}
    return {}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("metric compute", r"ValueError: broken step \(simulated\)"),
        ("gathering overlay maps", r"ValueError: broken step \(simulated\)"),
        ("figure drawing", r"ValueError: broken step \(simulated\)"),
        ("png writing", r"OSError: disk full \(simulated\)"),
        ("scalar logging", r"ValueError: broken step \(simulated\)"),
    ],
)
def test_a_failure_outside_attribution_is_counted_logged_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, error: str
) -> None:
    monitor = AttributionMonitor(**QUICK, **_break(step, tmp_path, monkeypatch))
    model = _NoScalarLogging() if step == "scalar logging" else TinyClassifier()
    run = trainer(tmp_path, [monitor], logger=False)
    with pytest.warns(RuntimeWarning, match=rf"evaluation at epoch 0 failed \({error}"):
        run.fit(model, *loaders())
    assert run.current_epoch == 2  # training went on
    assert monitor.num_failures == 2
    assert run.callback_metrics["explain/failures"] == 2.0
    assert len(model.seen) == 6


@pytest.mark.slow
def test_a_failing_figure_step_raises_with_on_error_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Figure, "savefig", _disk_full)
    monitor = AttributionMonitor(on_error="raise", figure_dir=str(tmp_path / "png"), **QUICK)
    with pytest.raises(MonitorError, match="failed") as caught:
        trainer(tmp_path, [monitor], logger=False).fit(TinyClassifier(), *loaders())
    assert isinstance(caught.value.__cause__, OSError)


class _TwoLoaders(TinyClassifier):
    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        pass


@pytest.mark.slow
def test_dataloader_idx_picks_the_loader_and_out_of_range_fails_before_training(
    tmp_path: Path,
) -> None:
    train, first = loaders()
    second = DataLoader(BoxedImages(20, 7), batch_size=8)
    monitor = AttributionMonitor(dataloader_idx=1, **QUICK)
    trainer(tmp_path, [monitor], max_epochs=1).fit(_TwoLoaders(), train, [first, second])
    index = int(monitor.probe.indices[0])
    assert torch.equal(monitor.probe.images[0], second.dataset.images[index])
    model = _TwoLoaders()
    monitor = AttributionMonitor(dataloader_idx=2, **QUICK)
    expected = (
        r"`dataloader_idx`: expected the index of a validation loader \(the trainer has 2"
        r" validation loaders: 0 to 1\), received 2"
    )
    with pytest.raises(ConfigurationError, match=expected):
        trainer(tmp_path, [monitor]).fit(model, train, [first, second])
    assert model.seen == []  # failed at the sanity check, before any training step


@pytest.mark.slow
def test_without_a_sanity_check_a_bad_index_fails_at_the_first_validation(
    tmp_path: Path,
) -> None:
    monitor = AttributionMonitor(dataloader_idx=1, **QUICK)
    with pytest.raises(ConfigurationError, match=r"has 1 validation loader: 0\), received 1"):
        trainer(tmp_path, [monitor], num_sanity_val_steps=0).fit(TinyClassifier(), *loaders())
    assert monitor.probe is None


class _NoValidationStep(TinyClassifier):
    validation_step = pl.LightningModule.validation_step


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("no loader", r"`dataloader_idx`: .* the trainer has 0 validation loaders"),
        ("limit_val_batches=0", r"`limit_val_batches`: expected a positive number, received 0"),
        ("no validation_step", r"the LightningModule has no `validation_step`"),
    ],
)
def test_a_fit_without_validation_fails_at_setup(tmp_path: Path, case: str, pattern: str) -> None:
    train, val = loaders()
    model = _NoValidationStep() if case == "no validation_step" else TinyClassifier()
    options = {"limit_val_batches": 0} if case == "limit_val_batches=0" else {}
    run = trainer(tmp_path, [AttributionMonitor(**QUICK)], **options)
    with pytest.raises(ConfigurationError, match=pattern):
        run.fit(model, train, None if case == "no loader" else val)
    assert model.seen == []


def test_the_custom_scalars_layout_matches_the_prefix_literally() -> None:
    layout = custom_scalars_layout("run.1(a)", ["grid_pg"], "most_relevant_first")
    (chart,) = layout["run.1(a)"].values()
    pattern = chart[1][0]
    assert re.search(pattern, "run.1(a)/grid_pg")  # the tag in every method's run
    assert not re.search(pattern, "runX1a/grid_pg")
