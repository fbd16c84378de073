"""The monitor's configuration errors, failure handling, batch formats and resumable state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from dave_lightning import BadInputError, ConfigurationError, UnsupportedModelError, precision
from dave_lightning.attributor import Attributor
from dave_lightning.callbacks import AttributionMonitor, MonitorError
from dave_lightning.registry import _REGISTRY, register_attributor
from tests.callbacks.helpers import (
    FAST,
    BoxedImages,
    Spy,
    TinyClassifier,
    events,
    loaders,
    trainer,
)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (
            {"methods": ["dave", "gradcam"]},
            r"`methods`: expected names from 'dave', .* received \['gradcam'\]",
        ),
        ({"methods": []}, r"`methods`: expected a non-empty list"),
        ({"methods": ["dave", "dave"]}, r"`methods`: expected each name once"),
        (
            {"metrics": ["grid_pg", "iou"]},
            r"`metrics`: expected names from 'grid_pg', 'energy_pg', 'deletion_auc',"
            r" 'patch_artifact',"
            r" received \['iou'\]",
        ),
        ({"num_images": 0}, r"`num_images`: expected an integer >= 1, received int 0"),
        (
            {"target": "logits"},
            r"`target`: expected one of 'label', 'pred', received str 'logits'",
        ),
        ({"on_error": "ignore"}, r"`on_error`: expected one of 'warn', 'raise'"),
        (
            {"deletion_order": "middle_out"},
            r"`deletion_order`: expected one of 'most_relevant_first'",
        ),
        ({"rotation": -3.0}, r"`rotation`"),
        ({"noise_alpha": 1.5}, r"`noise_alpha`"),
        ({"grid_size": 1}, r"`grid_size`: expected an integer >= 2"),
        (
            {"method_options": {"smoothgrad": {"nt_samples": 4}}},
            r"`method_options`: expected keys among the chosen methods \['dave'\]",
        ),
        (
            {"method_options": {"dave": {"num_samples": 4}}},
            r"no options that the monitor sets itself",
        ),
        ({"autocast": "int8"}, r"`autocast`: expected one of None, 'auto', 'bf16', 'fp16'"),
        ({"log_prefix": ""}, r"`log_prefix`"),
        ({"display_mean": [0.5, 0.5, 0.5]}, r"display_mean/display_std"),
        (
            {"scale": 1.0},
            r"`scale`: expected a \(low, high\) pair such as \(0.9, 1.1\), received 1.0",
        ),
        ({"scale": (0.9, 1.0, 1.1)}, r"`scale`: expected a \(low, high\) pair"),
    ],
)
def test_bad_configurations_fail_at_construction(options: dict[str, Any], pattern: str) -> None:
    with pytest.raises((ConfigurationError, BadInputError), match=pattern):
        AttributionMonitor(**options)


def test_dave_options_without_dave_among_the_methods_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError) as caught:
        AttributionMonitor(methods=["gradient", "random"], noise_alpha="auto")
    assert str(caught.value) == (
        "`noise_alpha`: applies only to the 'dave' method, which is not in `methods` "
        "['gradient', 'random']; add 'dave' to `methods` or leave `noise_alpha` at the default "
        "(received noise_alpha='auto')."
    )
    with pytest.raises(ConfigurationError, match=r"^`noise_alpha`, `scale`: apply only to"):
        AttributionMonitor(methods=["gradient"], noise_alpha=0.3, scale=[0.8, 1.2])
    # Defaults, even spelled out, and the sample count the demo always passes are accepted.
    AttributionMonitor(methods=["gradient"])
    AttributionMonitor(methods=["gradient"], noise_alpha=None, scale=[0.9, 1.1], num_samples=16)
    assert AttributionMonitor(noise_alpha="auto").config.noise_alpha == "auto"


class _BatchNormModule(TinyClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.stem(x))


@pytest.mark.slow
def test_setup_rejects_unsupported_models_and_bad_attributes_before_training(
    tmp_path: Path,
) -> None:
    with pytest.raises(UnsupportedModelError, match="BatchNorm2d"):
        trainer(tmp_path, [AttributionMonitor(**FAST)]).fit(_BatchNormModule(), *loaders())
    with pytest.raises(
        ConfigurationError, match=r"`model_attribute`: .* received 'net' \(not found\)"
    ):
        trainer(tmp_path, [AttributionMonitor(model_attribute="net", **FAST)]).fit(
            TinyClassifier(), *loaders()
        )
    monitor = AttributionMonitor(grid_full_resolution=True, **FAST)
    with pytest.raises(ConfigurationError, match=r"`grid_full_resolution`: expected a model built"):
        trainer(tmp_path, [monitor]).fit(TinyClassifier(), *loaders())
    monitor = AttributionMonitor(
        methods=["smoothgrad"], method_options={"smoothgrad": {"samples": 3}}
    )
    with pytest.raises(ConfigurationError, match=r"unknown option 'samples'"):
        trainer(tmp_path, [monitor]).fit(TinyClassifier(), *loaders())


class _Failing(Attributor):
    name = "failing"
    mode = "raise"

    def _attribute(
        self, images: torch.Tensor, targets: torch.Tensor, image_ids: list[int]
    ) -> torch.Tensor:
        if self.mode == "raise":
            raise RuntimeError("out of memory (simulated)")
        return torch.full((images.shape[0], targets.shape[1], 1, *images.shape[2:]), float("nan"))


@pytest.fixture
def failing() -> Any:
    register_attributor("failing", _Failing, overwrite=True)
    yield _Failing
    _REGISTRY.pop("failing")


@pytest.mark.slow
def test_on_error_warn_counts_logs_and_training_goes_on(tmp_path: Path, failing: Any) -> None:
    monitor = AttributionMonitor(methods=["failing"], **FAST)
    pl.seed_everything(0, verbose=False)
    run = trainer(tmp_path, [monitor])
    with pytest.warns(
        RuntimeWarning,
        match=r"failing/attribution failed at epoch 0 \(RuntimeError: out of memory "
        r"\(simulated\)\); .* training goes on",
    ):
        run.fit(TinyClassifier(), *loaders())
    assert run.current_epoch == 2
    assert monitor.num_failures == 4  # per evaluation: the probe maps and the grid maps
    logged = events(tmp_path).Scalars("explain/failures")
    assert [event.value for event in logged] == [2.0, 4.0]  # the running count, once per epoch
    assert [event.step for event in logged] == [
        event.step for event in events(tmp_path).Scalars("val_loss")
    ]


@pytest.mark.slow
def test_on_error_raise_stops_with_the_cause(tmp_path: Path, failing: Any) -> None:
    monitor = AttributionMonitor(methods=["failing"], on_error="raise", **FAST)
    with pytest.raises(MonitorError, match="out of memory") as caught:
        trainer(tmp_path, [monitor]).fit(TinyClassifier(), *loaders())
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.slow
def test_nan_maps_are_counted_and_warned_about(tmp_path: Path, failing: Any) -> None:
    failing.mode = "nan"
    try:
        monitor = AttributionMonitor(methods=["failing", "gradient"], metrics=["energy_pg"], **FAST)
        with pytest.warns(UserWarning, match="failing produced 10 non-finite maps"):
            trainer(tmp_path, [monitor]).fit(TinyClassifier(), *loaders())
    finally:
        failing.mode = "raise"
    assert monitor.history[-1]["explain/failing/num_nan"] == 10
    assert "explain/failing/energy_pg" not in monitor.history[-1]
    assert 0 <= monitor.history[-1]["explain/gradient/energy_pg"] <= 1


class _DictImages(BoxedImages):
    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"image": self.images[index], "label": self.labels[index]}


@pytest.mark.slow
def test_dict_batches_without_boxes_warn_once_and_skip_energy(tmp_path: Path) -> None:
    monitor = AttributionMonitor(methods=["gradient"], **FAST)
    val = DataLoader(_DictImages(20, 1), batch_size=8)

    class Module(TinyClassifier):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

    with pytest.warns(
        UserWarning,
        match="EnergyPG is skipped because the validation batches carry no object boxes",
    ):
        trainer(tmp_path, [monitor]).fit(Module(), loaders()[0], val)
    assert "explain/gradient/energy_pg" not in monitor.history[-1]
    assert "explain/gradient/grid_pg" in monitor.history[-1]


@pytest.mark.slow
def test_batch_transform_and_too_few_classes_for_grids(tmp_path: Path) -> None:
    def to_tuple(batch: Any) -> Any:
        images, labels, boxes = batch
        return images, labels % 2, boxes  # two classes only: no 2x2 grid of distinct classes

    monitor = AttributionMonitor(methods=["gradient"], batch_transform=to_tuple, **FAST)
    with pytest.warns(UserWarning, match="GridPG is skipped: no 2x2 grid can be formed"):
        trainer(tmp_path, [monitor]).fit(TinyClassifier(), *loaders())
    assert set(monitor.probe.labels.tolist()) == {0, 1}
    assert "explain/gradient/grid_pg" not in monitor.history[-1]


@pytest.mark.slow
def test_a_batch_the_monitor_cannot_read_fails_at_the_sanity_check(tmp_path: Path) -> None:
    monitor = AttributionMonitor(
        methods=["gradient"], batch_transform=lambda batch: batch[0], **FAST
    )
    model = TinyClassifier()
    with pytest.raises(BadInputError, match=r"`batch`: expected a tuple \(images, labels"):
        trainer(tmp_path, [monitor]).fit(model, *loaders())
    assert model.seen == []  # no training step was spent


@pytest.mark.slow
def test_resume_from_a_checkpoint_keeps_the_probe_set(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = AttributionMonitor(methods=["gradient"], **FAST)
    pl.seed_everything(0, verbose=False)
    trainer(tmp_path, [first, checkpoint], max_epochs=1, enable_checkpointing=True).fit(
        TinyClassifier(), *loaders()
    )
    resumed = AttributionMonitor(
        methods=["gradient"], seed=123, **FAST
    )  # would choose other images
    trainer(tmp_path, [resumed], max_epochs=2).fit(
        TinyClassifier(), *loaders(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
    )
    assert torch.equal(resumed.probe.indices, first.probe.indices)
    assert torch.equal(resumed.probe.images, first.probe.images)
    assert [row["epoch"] for row in resumed.history] == [0.0, 1.0]
    fresh = AttributionMonitor(methods=["gradient"], seed=123, **FAST)
    trainer(tmp_path, [fresh], max_epochs=1).fit(TinyClassifier(), *loaders())
    assert not torch.equal(fresh.probe.indices, first.probe.indices)


def _probe_calls(spy: type[Spy]) -> list[dict[str, Any]]:
    return [call for call in spy.calls if min(call["ids"]) >= 0]  # grids have negative ids


@pytest.mark.slow
def test_pred_targets_and_opt_in_autocast(tmp_path: Path, spy: type[Spy]) -> None:
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier()
    monitor = AttributionMonitor(methods=["spy"], target="pred", autocast="bf16", **FAST)
    trainer(tmp_path, [monitor], max_epochs=1).fit(model, *loaders())
    model.eval()
    with torch.no_grad():
        predictions = model(monitor.probe.images).argmax(dim=1)
    assert not torch.equal(predictions, monitor.probe.labels)  # else the test could not tell
    (call,) = _probe_calls(spy)
    assert torch.equal(call["targets"], predictions)
    assert call["ids"] == monitor.probe.indices.tolist()
    assert call["autocast"]
    assert call["autocast_dtype"] == torch.bfloat16
    assert 0 <= monitor.history[-1]["explain/spy/energy_pg"] <= 1


@pytest.mark.slow
def test_float32_with_autocast_none_under_mixed_precision(tmp_path: Path, spy: type[Spy]) -> None:
    monitor = AttributionMonitor(methods=["spy"], autocast=None, **FAST)
    run = trainer(tmp_path, [monitor], max_epochs=1, precision="bf16-mixed", logger=False)
    run.fit(TinyClassifier(), *loaders())
    calls = _probe_calls(spy)
    assert calls
    assert torch.equal(calls[0]["targets"], monitor.probe.labels)  # target="label"
    for call in calls:
        assert not call["autocast"]
        assert call["images_dtype"] == call["maps_dtype"] == torch.float32


@pytest.mark.slow
def test_default_autocast_is_bf16_exactly_where_the_trainer_device_has_it(
    tmp_path: Path, spy: type[Spy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``autocast="auto"`` asks :func:`bf16_by_default` about the trainer's device, at setup."""
    asked: list[torch.device] = []
    for answer in (False, True):
        spy.calls.clear()
        asked.clear()

        def bf16_here(device: torch.device | str, answer: bool = answer) -> bool:
            asked.append(torch.device(device))
            return answer

        monkeypatch.setattr(precision, "bf16_by_default", bf16_here)
        monitor = AttributionMonitor(methods=["spy"], **FAST)
        run = trainer(tmp_path / str(answer), [monitor], max_epochs=1, logger=False)
        run.fit(TinyClassifier(), *loaders())
        assert asked == [run.strategy.root_device]
        calls = _probe_calls(spy)
        assert calls
        assert monitor.autocast_dtype == (torch.bfloat16 if answer else None)
        for call in calls:
            assert call["autocast"] is answer
            if answer:
                assert call["autocast_dtype"] == torch.bfloat16
