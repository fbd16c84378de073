"""Small helpers every layer shares: argument checks, restoring module modes, the Gaussian kernel.

Depends only on torch and :mod:`dave_lightning.errors` (tests check it), so the core, the
metrics and the data layer can all use it without depending on each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from dave_lightning.errors import BadInputError

__all__ = [
    "check_choice",
    "check_int",
    "describe",
    "gaussian_kernel_1d",
    "is_integer",
    "restored_modes",
]

_Choice = TypeVar("_Choice")


def describe(value: Any) -> str:
    """A short description of a received value for error messages (dtype and shape for tensors).

    Example:
        >>> import torch
        >>> describe(torch.zeros(2, 3)), describe(0.5)
        ('a torch.float32 tensor of shape (2, 3)', 'float 0.5')
    """
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an int and not a bool (the rule of :func:`check_int`)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(
    name: str,
    value: Any,
    minimum: int | None = None,
    *,
    odd: bool = False,
    error: type[BadInputError] = BadInputError,
    shown: Callable[[Any], str] = describe,
) -> int:
    """Return ``value`` when it is an int (not a bool) ``>= minimum`` (and odd if asked).

    Args:
        name: The argument as the user typed it (``"--epochs"`` for a flag).
        value: What was received.
        minimum: The smallest accepted value, if any.
        odd: Accept odd integers only.
        error: The class raised (:class:`~dave_lightning.errors.ConfigurationError` for options
            checked at construction).
        shown: How the received value is written in the message (default :func:`describe`;
            ``repr`` writes the bare value).

    Raises:
        BadInputError: (or ``error``) ``"`name`: expected ..., received ..."``.

    Example:
        >>> check_int("steps", 0, minimum=1)
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `steps`: expected an integer >= 1, received int 0.
    """
    valid = (
        is_integer(value) and (minimum is None or value >= minimum) and (not odd or value % 2 == 1)
    )
    if not valid:
        kind = "an odd integer" if odd else "an integer"
        expected = kind if minimum is None else f"{kind} >= {minimum}"
        raise error.for_argument(name, expected, shown(value))
    return int(value)


def check_choice(
    name: str,
    value: _Choice,
    choices: Sequence[_Choice],
    *,
    error: type[BadInputError] = BadInputError,
    shown: Callable[[Any], str] = describe,
    expected: str | None = None,
) -> _Choice:
    """Return ``value`` when it is one of ``choices``; the error lists them.

    Args:
        name: The argument as the user typed it.
        value: What was received.
        choices: The accepted values.
        error: The class raised, as for :func:`check_int`.
        shown: How the received value is written, as for :func:`check_int`.
        expected: The message's wording of the choices (default ``"one of 'a', 'b'"``).

    Example:
        >>> check_choice("order", "up", ("a", "b"))
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `order`: expected one of 'a', 'b', received str 'up'.
    """
    if value not in choices or isinstance(value, Tensor):
        listed = ", ".join(repr(choice) for choice in choices)
        raise error.for_argument(name, expected or f"one of {listed}", shown(value))
    return value


@contextlib.contextmanager
def restored_modes(model: nn.Module) -> Iterator[None]:
    """Put every module's ``training`` flag back on exit, one by one, also when the body raises.

    (``model.train(mode)`` would not: it sets one flag for every submodule, losing mixed modes.)
    """
    saved = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


def gaussian_kernel_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    """The normalised ``exp(-x² / 2σ²)`` at the ``size`` offsets centred on 0, like ``like``.

    One kernel for every Gaussian blur in the package (the display blur and pixel deletion's
    blurred replacement); a 2-D blur applies it along each axis in turn.

    Example:
        >>> import torch
        >>> gaussian_kernel_1d(3, 1.0, torch.zeros(0, dtype=torch.float64))
        tensor([0.2741, 0.4519, 0.2741], dtype=torch.float64)
    """
    offsets = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()
