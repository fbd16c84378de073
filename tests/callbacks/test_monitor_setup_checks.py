"""Fail fast: options contradicting the model or the data are errors at setup (issue 15, item 7)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
import pytorch_lightning as pl
import torch

from dave_lightning import BadInputError, ConfigurationError
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._probe import parse_batch
from tests.callbacks.helpers import FAST, TinyClassifier, loaders, trainer


def test_a_figure_dir_that_is_a_file_fails_at_construction(tmp_path: Path) -> None:
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    with pytest.raises(ConfigurationError, match=r"`figure_dir`: expected a folder .*\(a file\)"):
        AttributionMonitor(figure_dir=str(file))
    with pytest.raises(ConfigurationError, match=r"`figure_dir`: .*inside the file"):
        AttributionMonitor(figure_dir=str(file / "png"))
    AttributionMonitor(figure_dir=str(tmp_path / "new" / "png"))  # can be made: fine


def test_display_stats_of_the_wrong_length_fail_at_setup() -> None:
    with pytest.raises(ConfigurationError, match=r"`display_mean/display_std`: expected as many"):
        AttributionMonitor(display_mean=(0.5, 0.5, 0.5), display_std=(0.5,))
    monitor = AttributionMonitor(methods=["gradient"], display_mean=(0.5,), display_std=(0.2,))
    with pytest.raises(
        ConfigurationError, match=r"`display_mean`: expected 3 values \(one per channel of the"
    ):
        monitor.setup_monitor(TinyClassifier())


def test_a_patch_size_that_does_not_divide_the_images_fails_at_setup() -> None:
    monitor = AttributionMonitor(methods=["gradient"], metrics=["patch_artifact"], patch_size=5)
    with pytest.raises(
        ConfigurationError,
        match=r"`patch_size`: expected a size that divides the model's input size \(32x32\), "
        r"received 5x5",
    ):
        monitor.setup_monitor(TinyClassifier())


def test_masks_of_the_wrong_shape_are_rejected_with_the_probe() -> None:
    images, labels = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    with pytest.raises(BadInputError, match=r"`mask`: expected a \(2, 8, 8\) bool tensor"):
        parse_batch((images, labels, torch.ones(2, 4, 4, dtype=torch.bool)))
    *_, masks = parse_batch((images, labels, torch.ones(2, 1, 8, 8, dtype=torch.bool)))
    assert masks is not None
    assert masks.shape == (2, 8, 8)


@pytest.mark.slow
def test_a_failing_probe_choice_follows_on_error_warn(tmp_path: Path) -> None:
    def broken(batch: object) -> object:
        raise OSError("unreadable file (simulated)")

    monitor = AttributionMonitor(methods=["gradient"], batch_transform=broken, **FAST)
    pl.seed_everything(0, verbose=False)
    run = trainer(tmp_path, [monitor], logger=False)
    with pytest.warns(RuntimeWarning, match=r"choosing the probe failed at epoch 0 \(OSError"):
        run.fit(TinyClassifier(), *loaders())
    assert run.current_epoch == 2  # training went on
    assert monitor.probe is None
    assert monitor.history == []
    assert monitor.num_failures == 3  # the sanity check and both validations
    assert run.callback_metrics["explain/failures"] == 3.0


@pytest.fixture
def pdf_backend() -> object:
    previous = matplotlib.get_backend()
    plt.close("all")
    matplotlib.use("pdf")
    yield
    plt.close("all")
    matplotlib.use(previous)


@pytest.mark.slow
def test_figures_leave_the_matplotlib_backend_and_pyplot_alone(
    tmp_path: Path, pdf_backend: object
) -> None:
    user_figure = plt.figure()  # the user's own open figure
    monitor = AttributionMonitor(methods=["gradient"], figure_dir=str(tmp_path / "png"), **FAST)
    pl.seed_everything(0, verbose=False)
    trainer(tmp_path, [monitor], max_epochs=1).fit(TinyClassifier(), *loaders())
    assert sorted(path.name for path in (tmp_path / "png").iterdir()) == [
        "deletion_curves_epoch000.png",
        "overlays_epoch000.png",
    ]
    assert matplotlib.get_backend() == "pdf"
    assert plt.get_fignums() == [user_figure.number]
