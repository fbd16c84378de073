"""Distributed runs, LightningCLI configuration files and the `lightning` namespace twin."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LightningCLI
from torch.utils.data import DataLoader

from dave_lightning.callbacks import AttributionMonitor
from tests.callbacks.helpers import FAST, BoxedImages, TinyClassifier, loaders
from tests.helpers import tiny_vit

pytestmark = pytest.mark.slow  # every test runs a Trainer

DDP_OPTIONS = dict(FAST, methods=["dave", "gradient", "random"], num_images=12, max_grids=4)


def _validate(model: TinyClassifier, root: Path, **trainer_options: Any) -> dict[str, float]:
    trainer = pl.Trainer(
        default_root_dir=str(root),
        callbacks=[AttributionMonitor(**DDP_OPTIONS)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **trainer_options,
    )
    results = trainer.validate(model, DataLoader(BoxedImages(24, 1), batch_size=6), verbose=False)
    return {
        k: float(v)
        for k, v in results[0].items()
        if k.startswith("explain/") and k != "explain/time_s"
    }


def test_two_process_ddp_gives_the_single_process_scores(tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier(drop_rate=0.0)
    single = _validate(model, tmp_path / "single", devices=1)
    twin = TinyClassifier(drop_rate=0.0)
    twin.load_state_dict(model.state_dict())
    distributed = _validate(twin, tmp_path / "ddp", devices=2, strategy="ddp_spawn")
    assert set(single) == set(distributed)
    assert {"explain/dave/grid_pg", "explain/dave/energy_pg", "explain/dave/deletion_auc"} <= set(
        single
    )
    for key, value in single.items():
        assert distributed[key] == pytest.approx(value, abs=1e-5), key


class _Data(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return loaders()[0]

    def val_dataloader(self) -> DataLoader:
        return loaders()[1]


CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_checkpointing: false
  logger: false
  callbacks:
    - class_path: dave_lightning.callbacks.AttributionMonitor
      init_args:
        methods: [dave, smoothgrad]
        metrics: [energy_pg, deletion_auc]
        num_images: 6
        num_samples: 2
        rotation: 10.0
        scale: [0.95, 1.05]
        method_options:
          smoothgrad: {nt_samples: 2}
        deletion_steps: 4
        log_images: 0
        log_prefix: quality
"""


def test_a_lightning_cli_yaml_configures_the_monitor(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    cli = LightningCLI(
        TinyClassifier,
        _Data,
        args=["fit", "--config", str(path), f"--trainer.default_root_dir={tmp_path}"],
        save_config_callback=None,
    )
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, AttributionMonitor))
    assert monitor.config.methods == ("dave", "smoothgrad")
    assert monitor.config.scale == (0.95, 1.05)
    assert monitor.config.method_options == {"smoothgrad": {"nt_samples": 2}}
    assert set(monitor.history[-1]) >= {"quality/dave/energy_pg", "quality/smoothgrad/deletion_auc"}


@pytest.mark.skipif(
    importlib.util.find_spec("lightning") is None, reason="`lightning` is not installed"
)
def test_the_lightning_namespace_twin(tmp_path: Path) -> None:
    import lightning.pytorch as L

    from dave_lightning.callbacks.lightning import AttributionMonitor as Twin

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny_vit()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    monitor = Twin(methods=["gradient"], **FAST)
    trainer = L.Trainer(
        default_root_dir=str(tmp_path),
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[monitor],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), *loaders())
    assert isinstance(monitor, L.Callback)
    assert "explain/gradient/energy_pg" in monitor.history[-1]
    assert any(path.name.startswith("events.out") for path in tmp_path.rglob("*"))
