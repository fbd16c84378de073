"""validate before fit, and a monitor reused on other validation data (issue 15, item 5)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dave_lightning.callbacks import AttributionMonitor
from tests.callbacks.helpers import FAST, BoxedImages, TinyClassifier, loaders, trainer

pytestmark = pytest.mark.slow  # every test runs a Trainer

TINY = FAST | {"num_images": 4, "metrics": ["deletion_auc"], "log_images": 0}


def test_validate_before_fit_leaves_fits_first_epoch_explained(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], **TINY)
    model = TinyClassifier()
    train, val = loaders()
    trainer(tmp_path, [monitor]).validate(model, val, verbose=False)
    trainer(tmp_path, [monitor], max_epochs=2, limit_train_batches=1).fit(model, train, val)
    assert [(row["fit"], row["epoch"]) for row in monitor.history] == [
        (0.0, 0.0),  # the untrained model, from `validate`
        (1.0, 0.0),
        (1.0, 1.0),
    ]


def _fit(root: Path, monitor: AttributionMonitor, val: DataLoader) -> None:
    pl.seed_everything(0, verbose=False)
    train, _ = loaders()
    trainer(root, [monitor], max_epochs=1, limit_train_batches=1).fit(TinyClassifier(), train, val)


def test_a_monitor_reused_on_other_validation_data_chooses_a_new_probe(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], **TINY)
    _fit(tmp_path / "first", monitor, DataLoader(BoxedImages(20, 1), batch_size=8))
    first = monitor.probe
    other = BoxedImages(20, 9)
    with pytest.warns(UserWarning, match="the validation data changed since the probe was chosen"):
        _fit(tmp_path / "second", monitor, DataLoader(other, batch_size=8))
    assert monitor.probe is not first
    for position, index in enumerate(monitor.probe.indices.tolist()):
        assert torch.equal(monitor.probe.images[position], other.images[index])


def test_a_monitor_reused_on_the_same_data_keeps_its_probe(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], every_n_epochs=1, **TINY)
    _fit(tmp_path / "first", monitor, DataLoader(BoxedImages(20, 1), batch_size=8))
    first = monitor.probe
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*validation data changed.*")
        _fit(tmp_path / "second", monitor, DataLoader(BoxedImages(20, 1), batch_size=8))
    assert monitor.probe is first
    assert len(monitor.history) == 2  # the second fit's schedule starts afresh
