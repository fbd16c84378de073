"""Which validation runs the monitor explains; schedules that can never run (issue 15, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from dave_lightning import ConfigurationError
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._schedule import Schedule
from tests.callbacks.helpers import FAST, TinyClassifier, events, loaders, trainer

TINY = FAST | {"num_images": 4, "metrics": ["deletion_auc"], "log_images": 0}


def _fit(root: Path, monitor: AttributionMonitor, **options) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    run = trainer(root, [monitor], **options)
    run.fit(TinyClassifier(), *loaders(train_size=40, val_size=8))
    return run


@pytest.mark.slow
def test_step_based_validation_is_explained_at_every_run_at_its_step(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], **TINY)
    _fit(
        tmp_path,
        monitor,
        max_epochs=None,
        max_steps=8,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        limit_train_batches=None,
        limit_val_batches=1,
    )
    logged = events(tmp_path)
    steps = [event.step for event in logged.Scalars("explain/gradient/deletion_auc")]
    assert len(steps) == 4  # 4 validations, 4 evaluations
    assert steps == [event.step for event in logged.Scalars("val_loss")]
    assert steps == sorted(set(steps))  # each at its own global step
    assert [row["step"] for row in monitor.history] == steps


@pytest.mark.slow
def test_mid_epoch_and_end_of_epoch_validations_are_both_explained(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], **TINY)
    _fit(tmp_path, monitor, max_epochs=1, limit_train_batches=4, val_check_interval=0.5)
    assert [row["step"] for row in monitor.history] == [1.0, 3.0]  # logging steps


@pytest.mark.slow
def test_every_n_validations_counts_validation_runs(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], every_n_validations=2, **TINY)
    _fit(tmp_path, monitor, max_epochs=1, limit_train_batches=4, val_check_interval=1)
    assert [row["step"] for row in monitor.history] == [1.0, 3.0]  # logging steps
    assert monitor.state_dict()["schedule"]["validations"] == 4


@pytest.mark.slow
def test_every_n_epochs_with_validation_every_second_epoch(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], every_n_epochs=3, **TINY)
    _fit(tmp_path, monitor, max_epochs=6, limit_train_batches=1, check_val_every_n_epoch=2)
    # validations after epochs 2, 4, 6: the first at or after epochs 3 and 6
    assert [row["epoch"] for row in monitor.history] == [3.0, 5.0]


def test_schedule_counts_blocks_of_epochs() -> None:
    schedule = Schedule(every_n_epochs=3)
    picked = [done for done in (2, 4, 6, 8, 10, 12) if schedule.count_and_check(done)]
    assert picked == [4, 6, 10, 12]
    schedule = Schedule()
    assert all(schedule.count_and_check(0) for _ in range(5))


def test_both_schedules_at_once_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"`every_n_epochs/every_n_validations`"):
        AttributionMonitor(every_n_epochs=2, every_n_validations=2)
    with pytest.raises(ConfigurationError, match=r"`every_n_validations`: expected an integer"):
        AttributionMonitor(every_n_validations=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("schedule", "options", "pattern"),
    [
        (
            {"every_n_epochs": 3},
            {"max_epochs": 2},
            r"`every_n_epochs`=3 but this fit trains at most 2",
        ),
        (
            {"every_n_validations": 5},
            {"max_epochs": 2},
            r"`every_n_validations`=5 but this fit validates at most 3",
        ),
    ],
)
def test_a_schedule_that_never_runs_is_a_warning_at_the_start(
    tmp_path: Path, schedule: dict, options: dict, pattern: str
) -> None:
    monitor = AttributionMonitor(methods=["gradient"], **schedule, **TINY)
    run = trainer(tmp_path, [monitor], limit_train_batches=1, num_sanity_val_steps=0, **options)
    with pytest.warns(UserWarning, match=pattern):
        run.fit(TinyClassifier(), *loaders(train_size=8, val_size=8))
    assert monitor.history == []


@pytest.mark.slow
@pytest.mark.parametrize("sanity_steps", [1, 0])
def test_an_empty_validation_set_is_a_warning(tmp_path: Path, sanity_steps: int) -> None:
    """Before training with a sanity check; after the first epoch without one."""
    monitor = AttributionMonitor(methods=["gradient"], **TINY)
    model = TinyClassifier()
    train, _ = loaders(train_size=8)
    empty = loaders(val_size=0)[1]
    run = trainer(
        tmp_path, [monitor], max_epochs=1, limit_train_batches=1, num_sanity_val_steps=sanity_steps
    )
    with pytest.warns(UserWarning, match="yields no batches") as caught:
        run.fit(model, train, empty)
    assert len([w for w in caught if "yields no batches" in str(w.message)]) == 1
