"""Real tiny `Trainer.fit` runs: what reaches TensorBoard, and that training is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from tensorboard.plugins.custom_scalar import layout_pb2

from dave_lightning import get_attributor
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.metrics.functional import patch_artifact_score
from tests.callbacks.helpers import (
    FAST,
    MID_ACCUMULATION,
    TinyClassifier,
    assert_same,
    events,
    loaders,
    method_events,
    trainer,
    training_fingerprint,
)
from tests.helpers import tiny_vit

pytestmark = pytest.mark.slow  # every test runs a Trainer

METHODS = ["dave", "gradient", "random"]


def _fit(
    root: Path, callbacks: list, seed: int = 0, **options
) -> tuple[pl.Trainer, TinyClassifier]:
    pl.seed_everything(seed, verbose=False)
    model = TinyClassifier()
    run = trainer(root, callbacks, **options)
    run.fit(model, *loaders())
    return run, model


def test_scalars_images_and_layout_reach_tensorboard(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=METHODS, figure_dir=str(tmp_path / "png"), **FAST)
    run, _ = _fit(tmp_path, [monitor])
    logged = events(tmp_path)
    tags = set(logged.Tags()["scalars"])
    assert {"explain/time_s", "explain/dave/grid_pg", "explain/random_order/deletion_auc"} <= tags
    steps = [event.step for event in logged.Scalars("val_loss")]
    assert len(steps) == 2  # once per epoch, not in the sanity check
    runs = method_events(tmp_path)  # one TensorBoard run per method, the same tags in each
    assert sorted(runs) == sorted([*METHODS, "random_order"])
    for method in METHODS:
        method_tags = set(runs[method].Tags()["scalars"])
        assert {"explain/grid_pg", "explain/energy_pg", "explain/deletion_auc"} <= method_tags
        assert [event.step for event in runs[method].Scalars("explain/grid_pg")] == steps
        values = [event.value for event in runs[method].Scalars("explain/energy_pg")]
        assert values == pytest.approx(
            [row[f"explain/{method}/energy_pg"] for row in monitor.history]
        )
    assert set(runs["random_order"].Tags()["scalars"]) == {"explain/deletion_auc"}
    images = logged.Tags()["images"]
    assert {"explain/overlays", "explain/deletion_curves"} <= set(images)
    assert [event.step for event in logged.Images("explain/overlays")] == [0, 1]  # epochs
    layout = layout_pb2.Layout()
    layout.ParseFromString(logged.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    titles = {chart.title: chart.multiline.tag[0] for c in layout.category for chart in c.chart}
    assert titles[
        "pixel deletion AUC of score / unperturbed score, most relevant first (lower is better)"
    ] == ("^explain/deletion_auc$")
    assert monitor.runs.folders == []  # closed at the end of fit
    assert len(monitor.history) == 2
    saved = sorted(path.name for path in (tmp_path / "png").iterdir())
    assert saved == [
        f"{kind}_epoch00{e}.png" for kind in ("deletion_curves", "overlays") for e in (0, 1)
    ]
    assert run.callback_metrics["explain/dave/grid_pg"] == pytest.approx(
        monitor.history[-1]["explain/dave/grid_pg"]
    )


def test_training_is_bit_for_bit_unchanged_by_the_monitor(tmp_path: Path) -> None:
    without = training_fingerprint(tmp_path / "without", [], **MID_ACCUMULATION)
    monitor = AttributionMonitor(
        methods=["dave", "smoothgrad"], method_options={"smoothgrad": {"nt_samples": 3}}, **FAST
    )
    with_monitor = training_fingerprint(tmp_path / "with", [monitor], **MID_ACCUMULATION)
    assert len(monitor.history) == 6  # it really ran, at every validation (3 per epoch)
    assert with_monitor["after_each_validation"][1]["grad"][0] is not None  # live gradients
    assert_same(without, with_monitor)


def test_patch_artifact_equals_the_metric_on_the_same_maps(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], metrics=["patch_artifact"], **FAST)
    run, model = _fit(tmp_path, [monitor], max_epochs=1)
    model.eval().to(run.strategy.root_device)  # where the monitor ran, in its precision
    gradient = get_attributor("gradient", model, autocast_dtype=monitor.autocast_dtype)
    maps = gradient.attribute(
        monitor.probe.images.to(run.strategy.root_device), monitor.probe.labels
    )
    expected = patch_artifact_score(maps, patch_size=8).mean()
    assert monitor.history[-1]["explain/gradient/patch_artifact"] == pytest.approx(float(expected))


class _DynamicClassifier(TinyClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_vit(num_classes=5, dynamic_img_size=True, global_pool="avg")


def test_full_resolution_grids_are_twice_the_input_size(tmp_path: Path) -> None:
    monitor = AttributionMonitor(
        methods=["gradient"], metrics=["grid_pg"], grid_full_resolution=True, **FAST
    )
    pl.seed_everything(0, verbose=False)
    trainer(tmp_path, [monitor], max_epochs=1).fit(_DynamicClassifier(), *loaders())
    assert monitor.grids.grid_set is not None
    assert tuple(monitor.grids.grid_set.images.shape[-2:]) == (64, 64)
    assert 0 <= monitor.history[-1]["explain/gradient/grid_pg"] <= 1


def test_every_n_epochs_and_other_loggers(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], every_n_epochs=2, **FAST)
    csv = CSVLogger(str(tmp_path), name="csv")
    _fit(tmp_path, [monitor], max_epochs=4, logger=csv)
    assert [row["epoch"] for row in monitor.history] == [1.0, 3.0]
    text = (Path(csv.log_dir) / "metrics.csv").read_text()
    assert "explain/gradient/grid_pg" in text.splitlines()[0]


def test_logger_false_works_silently_and_still_writes_figure_dir(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    figures = tmp_path / "png"
    monitor = AttributionMonitor(methods=["gradient"], figure_dir=str(figures), **FAST)
    run, _ = _fit(tmp_path, [monitor], logger=False)
    assert not [w for w in recwarn if "logger" in str(w.message)]
    assert len(monitor.history) == 2
    assert "explain/gradient/deletion_auc" in run.callback_metrics
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    assert sorted(path.name for path in figures.iterdir()) == [
        f"{kind}_epoch00{e}.png" for kind in ("deletion_curves", "overlays") for e in (0, 1)
    ]


def test_validate_under_inference_mode_returns_the_scores(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["dave", "legrad"], **FAST)
    pl.seed_everything(0, verbose=False)
    run = trainer(tmp_path, [monitor], inference_mode=True)
    results = run.validate(TinyClassifier(), loaders()[1], verbose=False)[0]
    assert {"explain/dave/grid_pg", "explain/legrad/energy_pg", "explain/dave/deletion_auc"} <= set(
        results
    )
    assert len(monitor.history) == 1


def test_auto_noise_alpha_is_fixed_at_the_first_evaluation_and_drift_is_logged(
    tmp_path: Path,
) -> None:
    monitor = AttributionMonitor(
        methods=["dave"], metrics=["energy_pg"], noise_alpha="auto", **FAST
    )
    run, model = _fit(tmp_path, [monitor])
    levels = [round(0.1 * k, 1) for k in range(10)]
    used = [row["explain/dave/noise_alpha"] for row in monitor.history]
    again = [row["explain/dave/noise_alpha_recalibrated"] for row in monitor.history]
    assert len(used) == 2
    assert used == [again[0], again[0]]  # the first calibration's level, kept
    assert all(round(value, 1) in levels for value in again)
    assert monitor.state_dict()["fixed_noise_alpha"] == pytest.approx(again[0])
    curve = monitor.calibration_curve()
    assert curve is not None
    assert curve.noise_alpha == pytest.approx(again[-1])  # the curve of the last evaluation
    logged = events(tmp_path)
    assert "explain/dave/noise_alpha" in logged.Tags()["scalars"]
    assert "explain/dave/noise_sensitivity" in logged.Tags()["images"]
    dave_run = method_events(tmp_path)["dave"]
    assert {"explain/noise_alpha", "explain/noise_alpha_recalibrated"} <= set(
        dave_run.Tags()["scalars"]
    )
    model.eval().to(run.strategy.root_device)  # where the monitor ran, in its precision
    dave = get_attributor(
        "dave", model, noise_alpha="auto", num_samples=3, autocast_dtype=monitor.autocast_dtype
    )
    expected = dave.calibrate(
        monitor.probe.images.to(run.strategy.root_device),
        monitor.probe.labels,
        image_ids=monitor.probe.indices,
    )
    assert expected == pytest.approx(again[-1])


@pytest.mark.parametrize("recalibrate", [False, True])
def test_a_resumed_run_keeps_its_fixed_noise_level(tmp_path: Path, recalibrate: bool) -> None:
    monitor = AttributionMonitor(
        methods=["dave"],
        metrics=["energy_pg"],
        noise_alpha="auto",
        recalibrate_noise_every_evaluation=recalibrate,
        **(FAST | {"log_images": 0}),
    )
    monitor.load_state_dict({"fixed_noise_alpha": 0.55})  # what a checkpoint restores
    _fit(tmp_path, [monitor])
    used = [row["explain/dave/noise_alpha"] for row in monitor.history]
    again = [row["explain/dave/noise_alpha_recalibrated"] for row in monitor.history]
    if recalibrate:  # the option restores a re-calibration at every evaluation
        assert used == again
    else:  # 0.55 is not on the calibration grid: only the restored level gives it
        assert used == [0.55, 0.55]
        assert monitor.state_dict()["fixed_noise_alpha"] == 0.55


def test_auto_noise_sensitivity_is_logged_as_scalars_without_figures(tmp_path: Path) -> None:
    monitor = AttributionMonitor(
        methods=["dave"],
        metrics=["energy_pg"],
        noise_alpha="auto",
        target="pred",  # every probe image counts in the curve: no NaN level
        method_options={"dave": {"calibration_options": {"num_draws": 1}}},
        **(FAST | {"log_images": 0}),
    )
    _fit(tmp_path, [monitor])
    logged = events(tmp_path)
    assert "explain/dave/noise_sensitivity" not in logged.Tags()["images"]  # figures are off
    curve = monitor.calibration_curve()
    assert curve is not None
    assert curve.levels.tolist() == [round(0.1 * k, 1) for k in range(10)]
    steps = [event.step for event in logged.Scalars("explain/dave/noise_alpha")]
    assert len(steps) == 2
    for level, retained in zip(curve.levels.tolist(), curve.retained.tolist(), strict=True):
        events_at_level = logged.Scalars(f"explain/dave/noise_sensitivity/t_{level:.2f}")
        assert [event.step for event in events_at_level] == steps  # every evaluation
        assert events_at_level[-1].value == pytest.approx(retained)  # the last curve
        assert monitor.history[-1][f"explain/dave/noise_sensitivity/t_{level:.2f}"] == (
            pytest.approx(retained)
        )
    assert logged.Scalars("explain/dave/noise_sensitivity/t_0.00")[-1].value == pytest.approx(1.0)
    layout = layout_pb2.Layout()
    layout.ParseFromString(logged.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for c in layout.category for chart in c.chart}
    assert charts["DAVE noise sensitivity: retained target score per noise level t"] == [
        "^explain/noise_sensitivity/"  # in the run of DAVE
    ]


class _FailsInSecondEpoch(TinyClassifier):
    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.current_epoch == 1:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def test_method_runs_are_closed_when_fit_raises(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], metrics=["energy_pg"], **FAST)
    pl.seed_everything(0, verbose=False)
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, [monitor]).fit(_FailsInSecondEpoch(), *loaders())
    assert len(monitor.history) == 1
    assert monitor.runs.folders == []  # every writer closed
    assert sorted(method_events(tmp_path)) == ["gradient"]


def test_step_based_validation_keeps_every_evaluation_s_figures(tmp_path: Path) -> None:
    """Validating twice per epoch: figures by step, one image and one PNG per evaluation.

    Indexed by epoch, TensorBoard (one image per tag and step) would show only the last
    evaluation of each epoch, and each PNG would overwrite the one before.
    """
    monitor = AttributionMonitor(
        methods=["gradient"], metrics=["energy_pg"], figure_dir=str(tmp_path / "png"), **FAST
    )
    _fit(tmp_path, [monitor], limit_train_batches=4, val_check_interval=0.5)
    assert len(monitor.history) == 4  # two per epoch, two epochs
    logged = events(tmp_path)
    scalar_steps = [event.step for event in logged.Scalars("explain/gradient/energy_pg")]
    image_steps = [event.step for event in logged.Images("explain/overlays")]
    assert image_steps == scalar_steps
    assert len(set(image_steps)) == 4
    saved = sorted(path.name for path in (tmp_path / "png").iterdir())
    expected = [(0, image_steps[0]), (0, image_steps[1]), (1, image_steps[2]), (1, image_steps[3])]
    assert saved == [f"overlays_epoch{e:03d}_step{s:07d}.png" for e, s in expected]
