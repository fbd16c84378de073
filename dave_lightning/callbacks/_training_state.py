"""Guards that keep a training run bit-for-bit unchanged by the monitor."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dave_lightning._common import restored_modes

__all__ = ["preserved_generators", "preserved_rng", "preserved_training_state"]


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's, torch's and every initialised CUDA generator on exit."""
    rng = _rng_states()
    try:
        yield
    finally:
        _restore_rng_states(rng)


@contextlib.contextmanager
def preserved_generators(owners: Iterable[Any]) -> Iterator[None]:
    """Restore the ``generator`` (a ``torch.Generator``) of each object in ``owners`` on exit.

    E.g. a ``DataLoader(generator=...)`` shared with the training loader, or a sampler's.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> shared = torch.Generator().manual_seed(0)
        >>> loader = DataLoader(range(4), shuffle=True, generator=shared)
        >>> with preserved_generators([loader, loader.sampler]):
        ...     _ = list(loader)
        >>> torch.equal(shared.get_state(), torch.Generator().manual_seed(0).get_state())
        True
    """
    generators = {
        id(generator): generator
        for generator in (getattr(owner, "generator", None) for owner in owners)
        if isinstance(generator, torch.Generator)
    }
    states = [(generator, generator.get_state()) for generator in generators.values()]
    try:
        yield
    finally:
        for generator, state in states:
            generator.set_state(state)


@contextlib.contextmanager
def preserved_training_state(model: nn.Module) -> Iterator[None]:
    """Restore every RNG stream, module mode, ``requires_grad`` flag and ``.grad`` on exit.

    Python's ``random``, NumPy's global generator, torch's CPU generator and every initialised
    CUDA device's generator are saved and put back, so the training run draws exactly the numbers
    it would have drawn without the monitor. Each parameter's ``.grad`` is set aside (the
    reference, not a copy) and is ``None`` inside the block, so a backward pass there can neither
    accumulate into the training gradients nor leave new ones behind. All of it also when the
    block raises.

    Args:
        model: The LightningModule (or network) whose modes and flags must survive.

    Yields:
        Nothing.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> with preserved_training_state(model):
        ...     _ = torch.rand(3)
        ...     _ = model.eval()
        ...     _ = model.weight.requires_grad_(False)
        ...     model.weight.grad = torch.ones(2, 2)
        >>> model.training, model.weight.requires_grad, model.weight.grad
        (True, True, None)
    """
    rng = _rng_states()
    saved = [
        (parameter, parameter.requires_grad, parameter.grad) for parameter in model.parameters()
    ]
    try:
        for parameter, _, _ in saved:
            parameter.grad = None
        with restored_modes(model):
            yield
    finally:
        _restore_rng_states(rng)
        for parameter, requires_grad, grad in saved:
            parameter.requires_grad_(requires_grad)
            parameter.grad = grad
