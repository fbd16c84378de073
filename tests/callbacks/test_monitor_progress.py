"""The monitor's evaluation shows a progress bar exactly when the trainer shows one."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._progress import DESCRIPTION
from tests.callbacks.helpers import FAST, TinyClassifier, loaders, trainer

pytestmark = pytest.mark.slow  # every test runs a Trainer


@pytest.mark.parametrize("bar", [True, False])
def test_progress_bar_follows_the_trainers(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], bar: bool
) -> None:
    monitor = AttributionMonitor(
        methods=["gradient"], metrics=["energy_pg", "deletion_auc"], **(FAST | {"log_images": 0})
    )
    pl.seed_everything(0, verbose=False)
    run = trainer(tmp_path, [monitor], max_epochs=1, enable_progress_bar=bar)
    run.fit(TinyClassifier(), *loaders())
    assert len(monitor.history) == 1
    err = capfd.readouterr().err
    if bar:
        assert f"{DESCRIPTION}:" in err
        assert "3/3" in err  # gradient attribution, its metrics, the random-order reference
    else:
        assert DESCRIPTION not in err
