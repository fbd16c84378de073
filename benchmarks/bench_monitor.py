"""AttributionMonitor overhead, printed as ratios (issue 5).

Fits the demo's small ViT on the embedded dataset for a few epochs without and with the monitor.
At every evaluation of the monitored fit, the attribution and metric passes the monitor had to
run (the same methods, probe images, grids and metrics on the same model) are also called
directly, once just before the monitor and once just after it, inside the same validation-end
hook: the same model, process state and machine load, so the comparison is like with like.
It prints, from the medians over the evaluations:

(a) the monitor's time / the time of those passes called directly — goal <= 1.15: little
    overhead beyond the unavoidable passes (figure rendering is the overhead it does have, so
    its share is printed too);
(b) the monitor's time as a fraction of an epoch (training + validation) without it.

Run:
    python benchmarks/bench_monitor.py            # about 4 minutes on 2 CPU cores
    python benchmarks/bench_monitor.py --quick    # about 1 minute
"""

from __future__ import annotations

import argparse
import statistics
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


class _DirectPasses(Callback):
    """At each validation end, time the monitor's passes called directly (before or after it)."""

    def __init__(self, monitor: AttributionMonitor, seconds: list[float]) -> None:
        self.monitor, self.seconds = monitor, seconds

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        mode = pl_module.training
        pl_module.eval()
        with torch.inference_mode(False), torch.no_grad():
            self.seconds.append(_direct_passes(self.monitor, pl_module))
        pl_module.train(mode)


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
    """Time the attribution and metric calls one evaluation of the monitor has to make."""
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


def _fit(config: DemoConfig, callbacks: list[Any], root: str) -> None:
    """Fit with a TensorBoard logger, so the monitor's figures are rendered and written too."""
    fit_classifier(config, callbacks, TensorBoardLogger(root, name="bench"))


def _print_evaluations(rows: list[dict[str, float]]) -> None:
    print(
        "| evaluation | attribution | metrics | figures | monitor total | direct: before | after |"
    )
    print("|---|---|---|---|---|---|---|")
    for index, row in enumerate(rows):
        cells = " | ".join(
            f"{row[key]:.2f}"
            for key in ("attribution", "metrics", "figures", "total", "before", "after")
        )
        print(f"| {index + 1} | {cells} |")


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
        epochs=3 if args.quick else 4,
        train_size=256 if args.quick else 1024,
        val_size=128,
        progress=False,
    )
    root = tempfile.mkdtemp(prefix="bench_monitor_")
    plain_clock = _EpochClock()
    _fit(config, [plain_clock], root)

    monitor, before, after, evaluations = _monitor(args), [], [], []

    class _Record(Callback):
        def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                evaluations.append(dict(monitor.last_seconds))

    callbacks = [_DirectPasses(monitor, before), monitor, _Record(), _DirectPasses(monitor, after)]
    _fit(config, callbacks, root)
    rows = [
        evaluation | {"before": b, "after": a}
        for evaluation, b, a in zip(evaluations, before, after, strict=True)
    ]

    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    direct = statistics.median((row["before"] + row["after"]) / 2 for row in rows)
    total, figures = median("total"), median("figures")
    epoch = statistics.median(plain_clock.seconds[1:] or plain_clock.seconds)
    print(
        f"threads {torch.get_num_threads()}, probe {args.images} images, "
        f"DAVE N = {args.num_samples}, methods dave + gradient, "
        f"{config.train_size} training images per epoch; seconds per evaluation\n"
    )
    _print_evaluations(rows)
    print(f"\nmedian epoch without the monitor (train + val): {epoch:.2f} s")
    print(
        f"\n(a) monitor / its unavoidable passes called directly: **{total / direct:.2f}** "
        f"(goal <= 1.15); figures {figures / direct:.2f} of it, "
        f"without them {(total - figures) / direct:.2f}"
    )
    print(f"(b) monitor / epoch without it: **{total / epoch:.2f}**")


if __name__ == "__main__":
    main()
