"""The monitor's options: declared once, defaults read from their owners, checked once."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from dave_lightning import DAVE
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._metrics import MONITOR_METRICS, chart_title, higher_is_better
from dave_lightning.errors import ConfigurationError
from dave_lightning.metrics import DeletionOptions
from dave_lightning.metrics._plot import direction_label

DAVE_OPTIONS = ("num_samples", "noise_alpha", "flip_prob", "rotation", "translation", "scale")
DELETION_OPTIONS = {
    "deletion_steps": "steps",
    "deletion_max_fraction": "max_fraction",
    "deletion_order": "order",
    "deletion_replacement": "replacement",
    "deletion_batch_size": "batch_size",
}


def _monitor_defaults() -> dict[str, object]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(AttributionMonitor).parameters.items()
    }


def test_the_signature_is_the_config_fields_in_order() -> None:
    declared = [option.name for option in fields(MonitorConfig) if option.init]
    assert list(_monitor_defaults()) == declared
    assert _monitor_defaults()["num_images"] == 32
    assert _monitor_defaults()["method_options"] is None


def test_dave_defaults_are_daves_own_objects() -> None:
    dave = {name: p.default for name, p in inspect.signature(DAVE).parameters.items()}
    defaults = _monitor_defaults()
    for name in (*DAVE_OPTIONS, "aggregation"):
        assert defaults[name] is dave[name], name  # the same object: read, not copied


def test_deletion_defaults_are_the_deletion_options_defaults() -> None:
    metric_defaults = DeletionOptions()
    defaults = _monitor_defaults()
    for monitor_name, option in DELETION_OPTIONS.items():
        assert defaults[monitor_name] is getattr(metric_defaults, option), monitor_name


def test_positional_and_keyword_arguments_still_work() -> None:
    monitor = AttributionMonitor(["dave", "gradient"], ["grid_pg"], 4, deletion_steps=5)
    assert monitor.config.methods == ("dave", "gradient")
    assert monitor.config.num_images == 4
    assert monitor.config.deletion == DeletionOptions(steps=5)
    with pytest.raises(TypeError, match="num_imagez"):
        AttributionMonitor(num_imagez=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"deletion_batch_size": 0},
            "`deletion_batch_size`: expected an integer >= 1, received int 0.",
        ),
        (
            {"deletion_order": "middle_out"},
            "`deletion_order`: expected one of 'most_relevant_first', 'least_relevant_first', "
            "'random', received str 'middle_out'.",
        ),
        ({"deletion_steps": 0}, "`deletion_steps`: expected an integer >= 1, received int 0."),
        (
            {"deletion_max_fraction": 1.5},
            "`deletion_max_fraction`: expected a number in (0, 1], received float 1.5.",
        ),
        (
            {"deletion_replacement": "noise"},
            "`deletion_replacement`: expected one of 'blur', 'zero', 'mean', received str 'noise'.",
        ),
    ],
)
def test_deletion_errors_name_the_monitor_argument(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AttributionMonitor(**options)
    assert type(caught.value) is ConfigurationError
    assert str(caught.value) == message


@pytest.mark.parametrize("order", ["most_relevant_first", "least_relevant_first"])
def test_the_metric_table_takes_each_direction_from_the_metric(order: str) -> None:
    config = MonitorConfig(metrics=tuple(MONITOR_METRICS), deletion_order=order)
    for name, spec in MONITOR_METRICS.items():
        metric = spec.build(config, (4, 4))
        assert isinstance(metric, spec.metric_type)
        assert higher_is_better(name, order) == metric.higher_is_better, name
        assert chart_title(name, order).endswith(f"({direction_label(metric.higher_is_better)})")
    assert higher_is_better("deletion_auc", order) is (order == "least_relevant_first")


def test_a_misspelt_option_names_the_monitor_and_the_closest_option() -> None:
    with pytest.raises(
        TypeError,
        match=r"^AttributionMonitor\(\) got an unexpected keyword argument "
        r"'num_imags'; did you mean 'num_images'\?$",
    ):
        AttributionMonitor(num_imags=4)
    with pytest.raises(TypeError, match="'zzz'; the options are methods, metrics, num_images"):
        AttributionMonitor(zzz=1)
