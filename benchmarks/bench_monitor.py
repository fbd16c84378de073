"""AttributionMonitor overhead, printed as ratios (issue 5).

Fits the demo's small ViT on the embedded dataset for a few epochs without and with the monitor,
then prints:

(a) the monitor's time for its last evaluation / the time of the attribution and metric passes
    it had to run (the same methods, probe images, grids and metrics on the same final model,
    called directly) — goal <= 1.15: little overhead beyond the unavoidable passes;
(b) the monitor's time as a fraction of an epoch (training + validation) without it.

Run:
    python benchmarks/bench_monitor.py            # about 3 minutes on 2 CPU cores
    python benchmarks/bench_monitor.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger

from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.data import make_grids
from dave_lightning.demo import DemoConfig
from dave_lightning.demo.run import fit_classifier
from dave_lightning.metrics import EnergyPointingGame, GridPointingGame, PixelDeletion
from dave_lightning.registry import get_attributor


class _EpochClock(Callback):
    """Wall time of each epoch, training and validation together."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def _monitor(args: argparse.Namespace) -> AttributionMonitor:
    return AttributionMonitor(
        methods=["dave", "gradient"],
        num_images=args.images,
        num_samples=args.num_samples,
        log_images=6,
        max_grids=8,
        grid_full_resolution=True,
    )


def _direct_passes(monitor: AttributionMonitor, model: torch.nn.Module) -> float:
    """Time the attribution and metric calls the monitor's last evaluation had to make."""
    config, probe = monitor.config, monitor.probe
    assert probe is not None
    grids = make_grids(
        probe.images,
        probe.labels,
        config.grid_size,
        num_grids=config.max_grids,
        full_resolution=True,
        seed=config.seed,
    )
    deletion = dict(steps=config.deletion_steps, batch_size=config.deletion_batch_size)
    start = time.perf_counter()
    for method in config.methods:
        attributor = get_attributor(method, model, **config.options_for(method))
        maps = attributor.attribute(probe.images, probe.labels, image_ids=probe.indices)
        grid_maps = attributor.attribute(grids.images, grids.targets)
        GridPointingGame().update(grid_maps.flatten(0, 1), grids.explain_cells.flatten())
        EnergyPointingGame().update(maps, probe.boxes)
        PixelDeletion(**deletion).update(model, probe.images, maps, probe.labels, probe.indices)
    blank = torch.zeros(len(probe), *probe.images.shape[-2:])
    PixelDeletion(order="random", **deletion).update(model, probe.images, blank, probe.labels)
    return time.perf_counter() - start


def _fit(config: DemoConfig, callbacks: list[Any], root: str) -> torch.nn.Module:
    """Fit with a TensorBoard logger, so the monitor's figures are rendered and written too."""
    module, _, _ = fit_classifier(config, callbacks, TensorBoardLogger(root, name="bench"))
    return module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.images, args.num_samples = (16, 8) if args.quick else (32, 16)
    config = DemoConfig(
        epochs=2 if args.quick else 3,
        train_size=512 if args.quick else 1024,
        val_size=128,
        progress=False,
    )
    root = tempfile.mkdtemp(prefix="bench_monitor_")
    plain_clock = _EpochClock()
    _fit(config, [plain_clock], root)
    monitor, clock, seconds = _monitor(args), _EpochClock(), []

    class _Record(Callback):
        def on_validation_epoch_end(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule
        ) -> None:
            if not trainer.sanity_checking:
                seconds.append(dict(monitor.last_seconds))

    module = _fit(config, [monitor, _Record(), clock], root)
    module.eval()
    direct = min(_direct_passes(monitor, module) for _ in range(2))
    last = seconds[-1]
    epoch = sum(plain_clock.seconds[1:]) / max(1, len(plain_clock.seconds) - 1)
    print(
        f"threads {torch.get_num_threads()}, probe {args.images} images, "
        f"DAVE N = {args.num_samples}, methods dave + gradient, "
        f"{config.train_size} training images per epoch\n"
    )
    print("| quantity | seconds |")
    print("|---|---|")
    for key in ("attribution", "metrics", "figures", "total"):
        print(f"| monitor, last evaluation: {key} | {last.get(key, float('nan')):.2f} |")
    print(f"| the same passes called directly | {direct:.2f} |")
    print(f"| epoch without the monitor (train + val) | {epoch:.2f} |")
    print(
        f"\n(a) monitor / its unavoidable passes: **{last['total'] / direct:.2f}** (goal <= 1.15)"
    )
    print(f"(b) monitor / epoch without it: **{last['total'] / epoch:.2f}**")
    with_monitor = ", ".join(f"{s:.1f}" for s in clock.seconds)
    without = ", ".join(f"{s:.1f}" for s in plain_clock.seconds)
    print(f"    epochs with the monitor: {with_monitor} s; without: {without} s")


if __name__ == "__main__":
    main()
