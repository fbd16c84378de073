"""Every registered attribution method through the monitor, in one `trainer.validate`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl

import dave_lightning
from dave_lightning.callbacks import AttributionMonitor
from tests.callbacks.helpers import FAST, TinyClassifier, events, loaders, trainer

pytestmark = pytest.mark.slow  # every test runs a Trainer

METRICS = ["grid_pg", "energy_pg", "deletion_auc", "patch_artifact"]
TINY = {
    "dave": {"calibration_options": {"num_draws": 1}},
    "integrated_gradients": {"n_steps": 2},
    "smoothgrad": {"nt_samples": 2},
}


def test_every_registered_method_is_scored_and_logged(tmp_path: Path) -> None:
    methods = list(dave_lightning.available_attributors())
    assert {"integrated_gradients", "input_x_gradient", "effective_input_x_gradient"} <= set(
        methods
    )
    monitor = AttributionMonitor(
        methods=methods,
        metrics=METRICS,
        method_options={name: options for name, options in TINY.items() if name in methods},
        noise_alpha="auto",
        **FAST,
    )
    pl.seed_everything(0, verbose=False)
    run = trainer(tmp_path, [monitor], inference_mode=True)
    returned = run.validate(TinyClassifier(), loaders()[1], verbose=False)[0]
    logged = events(tmp_path)
    tags = set(logged.Tags()["scalars"])
    for method in methods:
        assert f"explain/{method}/num_nan" not in returned, method  # every map was finite
        for metric in METRICS:
            tag = f"explain/{method}/{metric}"
            assert tag in tags, tag
            assert math.isfinite(logged.Scalars(tag)[-1].value), tag
            assert returned[tag] == logged.Scalars(tag)[-1].value, tag
    assert 0.0 <= returned["explain/dave/noise_alpha"] < 1.0
    assert {f"explain/dave/noise_sensitivity/t_{k / 10:.2f}" for k in range(10)} <= tags
    assert {"explain/overlays", "explain/deletion_curves", "explain/dave/noise_sensitivity"} <= set(
        logged.Tags()["images"]
    )
    assert len(monitor.history) == 1
