"""The validation the monitor hooks into: that ``fit`` runs one, and which loader it reads."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from dave_lightning.callbacks._training_state import preserved_rng
from dave_lightning.errors import ConfigurationError

__all__ = [
    "check_validation_runs",
    "load_fit_validation_data",
    "validation_batches",
    "validation_loader",
]

_RUNS_AT = "AttributionMonitor runs at the end of validation epochs, but this `fit` runs none"


def _defines_validation_step(pl_module: Any) -> bool:
    step = getattr(type(pl_module), "validation_step", None)
    return getattr(step, "__qualname__", "") != "LightningModule.validation_step"


def check_validation_runs(trainer: Any, pl_module: Any) -> None:
    """Fail before any training when ``fit`` will run no validation (so the monitor never would).

    Args:
        trainer: The Lightning trainer (its ``enable_validation`` says whether ``fit`` validates).
        pl_module: The LightningModule.

    Raises:
        ConfigurationError: Saying why Lightning runs no validation: ``limit_val_batches=0``, no
            ``validation_step``, or no validation loader.
    """
    if getattr(trainer, "enable_validation", True):
        return
    if not trainer.limit_val_batches:
        raise ConfigurationError(
            f"{_RUNS_AT}: `limit_val_batches`: expected a positive number, received "
            f"{trainer.limit_val_batches!r}."
        )
    if not _defines_validation_step(pl_module):
        raise ConfigurationError(
            f"{_RUNS_AT}: the LightningModule has no `validation_step` (define one; it may just "
            "`pass`)."
        )
    raise ConfigurationError(
        f"{_RUNS_AT}: `dataloader_idx`: expected the index of a validation loader, but the "
        "trainer has 0 validation loaders; pass `val_dataloaders=` to `fit` or define "
        "`val_dataloader()`."
    )


def validation_loader(loaders: Any, index: int) -> Any:
    """The ``index``-th validation loader of a trainer (one loader, or a list or dict of them).

    Args:
        loaders: ``trainer.val_dataloaders``.
        index: The monitor's ``dataloader_idx``.

    Returns:
        The loader.

    Raises:
        ConfigurationError: Naming ``dataloader_idx`` and how many validation loaders exist.

    Example:
        >>> validation_loader(["first", "second"], 1)
        'second'
        >>> validation_loader(["first", "second"], 2)
        Traceback (most recent call last):
        ...
        dave_lightning.errors.ConfigurationError: `dataloader_idx`: expected the index of a \
validation loader (the trainer has 2 validation loaders: 0 to 1), received 2.
    """
    if loaders is None:
        found: list[Any] = []
    elif isinstance(loaders, Mapping):
        found = list(loaders.values())
    elif isinstance(loaders, Sequence):
        found = list(loaders)
    else:
        found = [loaders]
    if index < len(found):
        return found[index]
    count = len(found)
    which = f"{count} validation loader{'' if count == 1 else 's'}"
    which += f": 0 to {count - 1}" if count > 1 else (": 0" if count == 1 else "")
    raise ConfigurationError(
        f"`dataloader_idx`: expected the index of a validation loader (the trainer has {which}), "
        f"received {index}."
    )


def load_fit_validation_data(trainer: Any, needs_training_data: bool = False) -> bool:
    """At the start of ``fit``, load the validation (and training) data Lightning loads next.

    Only when Lightning's sanity check will run: it loads the validation data right after
    ``on_fit_start`` with every RNG stream isolated, so loading it here with the streams restored
    changes nothing (the sanity check then reuses it). The training data (only when
    ``needs_training_data``) is loaded through the public ``trainer.estimated_stepping_batches``,
    which Lightning documents for use at this point; it sets the batch counts of the run.

    Returns:
        Whether ``trainer.val_dataloaders`` and ``trainer.num_val_batches`` are now known.
    """
    if needs_training_data:
        with contextlib.suppress(Exception):  # e.g. no length: the bounds stay unknown
            _ = trainer.estimated_stepping_batches
    val_loop = getattr(
        getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "val_loop", None
    )
    sanity_check = (
        getattr(trainer, "num_sanity_val_steps", 0) > 0
        and getattr(trainer, "enable_validation", False)
        and not getattr(val_loop, "restarting", True)
    )
    if val_loop is None or not sanity_check:
        return trainer.val_dataloaders is not None
    with preserved_rng():
        val_loop.setup_data()
    return trainer.val_dataloaders is not None


def validation_batches(trainer: Any, index: int) -> float | None:
    """Batches per validation of the loader at ``index`` in ``fit`` (``None`` when unknown)."""
    try:
        return float(trainer.num_val_batches[index])
    except (AttributeError, IndexError, TypeError):
        return None
