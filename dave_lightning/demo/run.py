"""``dave-lightning demo``: fine-tune a tiny ViT on the embedded dataset with the monitor on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import timm
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader

from dave_lightning._common import check_int
from dave_lightning._output_folder import writable_folder
from dave_lightning._timm_models import create_model
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.data import DEFAULT_CLASSES, SyntheticShapes
from dave_lightning.data.synthetic import MIN_SIDE
from dave_lightning.demo.augmentation import Augmented, train_augmentation
from dave_lightning.demo.classifier import ImageClassifier
from dave_lightning.demo.config import DEFAULT_MODEL, DemoConfig, DemoResult
from dave_lightning.demo.shortcut import measure_shortcut
from dave_lightning.errors import BadInputError, ConfigurationError
from dave_lightning.registry import available_attributors

__all__ = [
    "DEFAULT_MODEL",
    "DemoConfig",
    "DemoResult",
    "build_classifier",
    "check_config",
    "datasets",
    "fit_classifier",
    "normalization",
    "run_demo",
    "training_data",
]

_MAX_SEED = 2**32 - 1  # what numpy (and so Lightning's seed_everything) accepts
_AT_LEAST_ONE = ("epochs", "train_size", "val_size", "batch_size", "num_samples", "num_images")


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _check_vit(config: DemoConfig) -> int:
    """The patch side of ``config.model``, refusing any model that is not a timm ViT.

    The architecture is built on the ``meta`` device: no memory, no weights, milliseconds.
    """
    from timm.models.vision_transformer import VisionTransformer

    with torch.device("meta"):
        plain = create_model(config.model)
    if not isinstance(plain, VisionTransformer):
        raise ConfigurationError(
            f"`--model`: the demo needs a ViT (a timm VisionTransformer such as "
            f"{DEFAULT_MODEL} or deit_tiny_patch16_224); {config.model} is a "
            f"{type(plain).__name__} (`dave-lightning explain --method gradient` takes any model)"
        )
    patch = config.model_kwargs().get("patch_size", plain.patch_embed.patch_size)
    return int(patch[0] if isinstance(patch, tuple | list) else patch)


def check_config(config: DemoConfig) -> None:
    """Refuse any value the demo cannot run with, naming its command-line flag, before any work.

    Also creates the output folder (``--out``), so an unwritable place fails now rather than at
    the first checkpoint.

    Raises:
        ConfigurationError: For a count below 1, a seed outside ``[0, 2**32 - 1]``, unknown or
            no ``--methods``, a model that is not a timm ViT, an image size below 16 or not a
            multiple of the model's patch, or a missing GPU.
        ModelCreationError: For a model name timm does not know.
        BadInputError: For an ``--out`` that is a file or not writable.
    """
    for name in _AT_LEAST_ONE:
        check_int(_flag(name), getattr(config, name), 1, error=ConfigurationError, shown=repr)
    if not 0 <= config.seed <= _MAX_SEED:
        raise ConfigurationError.for_argument(
            "--seed", f"an integer in [0, {_MAX_SEED}]", repr(config.seed)
        )
    known = available_attributors()
    unknown = [method for method in config.methods if method not in known]
    if unknown or not config.methods:
        raise ConfigurationError.for_argument(
            "--methods", "comma-separated names among " + ", ".join(known), repr(unknown or "")
        )
    config.accelerator()
    patch = _check_vit(config)
    if config.image_size < MIN_SIDE or config.image_size % patch:
        raise ConfigurationError.for_argument(
            "--image-size",
            f"a multiple of the model's patch size {patch}, at least {MIN_SIDE}",
            repr(config.image_size),
        )
    try:
        writable_folder(config.out, "--out")
    except BadInputError as error:
        raise ConfigurationError(str(error)) from None


class _AccuracyRecorder(Callback):
    """Copies the epoch's accuracies after validation (Lightning has aggregated them by then)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": float(trainer.current_epoch)}
        for name in ("train_acc", "val_acc"):
            if name in metrics:
                row[name] = float(metrics[name])
        self.rows.append(row)


EpochReport = Callable[["DemoResult", Callable[[str], None]], None]
"""Called after every epoch with the results so far and a function that prints a line."""


class _EpochReporter(Callback):
    """Hands the results so far to ``report`` after each epoch (validation included)."""

    def __init__(
        self, result: DemoResult, recorder: _AccuracyRecorder, monitor: Any, report: EpochReport
    ) -> None:
        self.result, self.recorder, self.monitor, self.report = result, recorder, monitor, report

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.result.accuracy, self.result.history = self.recorder.rows, self.monitor.history
        bar = trainer.progress_bar_callback
        self.report(self.result, bar.print if bar is not None else print)


def build_classifier(config: DemoConfig) -> ImageClassifier:
    """The demo's module, its weights initialised from ``config.seed``.

    Raises:
        ModelCreationError: When timm cannot build the model (e.g. an unknown name, or
            pretrained weights without network access).
    """
    pl.seed_everything(config.seed, verbose=False)
    return ImageClassifier(
        config.model,
        num_classes=len(DEFAULT_CLASSES),
        model_kwargs=config.model_kwargs(),
        class_names=list(DEFAULT_CLASSES),
        pretrained=config.pretrained,
        lr=config.lr,
    )


def normalization(model: nn.Module) -> tuple[list[float], list[float]]:
    """The mean and std of ``model``'s timm data configuration (what its inputs must have)."""
    data = timm.data.resolve_model_data_config(model)
    return [float(v) for v in data["mean"]], [float(v) for v in data["std"]]


def datasets(
    config: DemoConfig, model: nn.Module | None = None
) -> tuple[SyntheticShapes, SyntheticShapes]:
    """The training and validation splits (with ``spurious``, validation carries the mark too).

    Args:
        config: The demo's settings.
        model: The model the data is for: the images are normalised as its timm data
            configuration says. ``None``: the model ``config`` describes (built without
            pretrained weights, which do not change the configuration).

    Returns:
        The training and validation datasets.
    """
    if model is None:
        model = create_model(config.model, **config.model_kwargs())
    mean, std = normalization(model)
    common: dict[str, Any] = {
        "seed": config.seed,
        "image_size": config.image_size,
        "cache": True,
        "cue_placement": "inset",
        "mean": mean,
        "std": std,
    }
    train = SyntheticShapes("train", length=config.train_size, spurious=config.spurious, **common)
    # With the shortcut, validation images carry the same cue: accuracy looks fine.
    val_cue = "correlated" if config.spurious else "uncorrelated"
    val = SyntheticShapes(
        "val", length=config.val_size, spurious=config.spurious, eval_cue=val_cue, **common
    )
    return train, val


def _monitor(config: DemoConfig, dataset: SyntheticShapes) -> AttributionMonitor:
    return AttributionMonitor(
        methods=list(config.methods),
        num_images=config.num_images,
        num_samples=config.num_samples,
        log_images=6,
        max_grids=8,
        grid_full_resolution=config.shrunk,
        seed=config.seed,
        figure_dir=str(config.out / "figures"),
        display_mean=list(dataset.mean),
        display_std=list(dataset.std),
    )


def fit_classifier(
    config: DemoConfig,
    callbacks: Sequence[Callback] = (),
    logger: Any = False,
    module: ImageClassifier | None = None,
) -> tuple[ImageClassifier, SyntheticShapes, SyntheticShapes]:
    """Train the demo's classifier on the embedded data (the demo adds its monitor as a callback).

    With ``config.augment`` (the default) every training image is randomly cropped, flipped,
    rotated and shifted (:func:`~dave_lightning.demo.augmentation.train_augmentation`), with its
    box moved alike; validation images are never augmented. The draws follow ``config.seed``.

    Args:
        config: The settings (model, data sizes, epochs, ``spurious``, ``augment``, seed, device).
        callbacks: Extra Lightning callbacks.
        logger: A Lightning logger, or ``False``.
        module: The module to train, fresh from :func:`build_classifier`; ``None`` builds it.

    Returns:
        The trained module and its training and validation datasets.
    """
    accelerator = config.accelerator()
    module = build_classifier(config) if module is None else module
    train, val = datasets(config, module.model)
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        callbacks=list(callbacks),
        enable_progress_bar=config.progress,
        enable_model_summary=config.progress,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        log_every_n_steps=10,
        num_sanity_val_steps=1,
        deterministic=True,
    )
    trainer.fit(
        module,
        _training_loader(config, train),
        DataLoader(val, batch_size=config.batch_size),
    )
    return module, train, val


def training_data(config: DemoConfig, train: SyntheticShapes) -> SyntheticShapes | Augmented:
    """What the training loader reads: ``train``, augmented when ``config.augment`` is set."""
    if not config.augment:
        return train
    return Augmented(train, train_augmentation(train.image_size))


def _training_loader(config: DemoConfig, train: SyntheticShapes) -> DataLoader[Any]:
    """Shuffled batches; augmentation runs in one worker process, beside the training.

    torchvision's per-image transforms are slow with several intra-op threads (tiny tensors);
    a worker runs them single-threaded while the main process trains. Its draws are seeded
    from the main process's generator, so a run repeats exactly for a given seed.
    """
    workers = 1 if config.augment else 0
    return DataLoader(
        training_data(config, train),
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def run_demo(config: DemoConfig, on_epoch: EpochReport | None = None) -> DemoResult:
    """Train, monitor, and collect what the report prints.

    Args:
        config: The demo's settings.
        on_epoch: Called after every epoch with the results so far (e.g. to print its row).

    Returns:
        The per-epoch measurements and, with ``spurious``, the shortcut's fingerprints.
    """
    check_config(config)  # bad values and a missing GPU fail before anything is built
    module = build_classifier(config)
    probe_data = datasets(config, module.model)[1]
    monitor, recorder = _monitor(config, probe_data), _AccuracyRecorder()
    logger = TensorBoardLogger(str(config.out), name="tensorboard", default_hp_metric=False)
    checkpoint = ModelCheckpoint(dirpath=config.out / "checkpoints", save_last=True)
    callbacks: list[Callback] = [monitor, recorder, checkpoint]
    if on_epoch is not None:
        callbacks.append(_EpochReporter(DemoResult(config), recorder, monitor, on_epoch))
    module, train, val = fit_classifier(config, callbacks, logger, module)
    result = DemoResult(
        config,
        recorder.rows,
        monitor.history,
        log_dir=Path(logger.log_dir),
        class_names=tuple(train.classes),
    )
    if config.spurious:
        measure_shortcut(result, module, monitor, val)
    return result
