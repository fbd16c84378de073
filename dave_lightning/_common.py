"""Small helpers every layer shares: argument checks, restoring module modes, a Gaussian kernel.

The checks: integers, choices, a classifier's logits and class indices.

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
    "check_class_indices",
    "check_int",
    "check_logits",
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
    if isinstance(value, Tensor) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise error.for_argument(name, expected or f"one of {listed}", shown(value))
    return value


def check_logits(output: Any, rows: int | None = None, *, min_classes: int = 1) -> Tensor:
    """Return ``output`` when it is ``(rows, num_classes)`` logits, ``num_classes >= min_classes``.

    Any number of rows is accepted when ``rows`` is ``None``. The one check of a classifier's
    output: the attributors, calibration, the confidence filter and the monitor's model check
    all use it.

    Raises:
        BadInputError: Naming ``model``, with the shape received (or, for a dict or a tuple, its
            keys or length and how to wrap such a model).

    Example:
        >>> import torch
        >>> check_logits({"logits": torch.zeros(2, 3)})
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `model`: ... received a dict with keys ['logits'].
        >>> check_logits(torch.zeros(4, 1), rows=4, min_classes=2)
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `model`: ... >= 2, received an output of shape (4, 1).
    """
    is_logits = isinstance(output, Tensor) and output.dim() == 2
    if is_logits and (rows is None or output.shape[0] == rows) and output.shape[1] >= min_classes:
        return output
    shape = f"({'B' if rows is None else rows}, num_classes)"
    if isinstance(output, Tensor):
        expected = f"a classifier returning {shape} logits"
    else:
        expected = (
            f"a classifier whose forward returns {shape} logits (wrap one that returns a dict or "
            "tuple in a module that picks the logits)"
        )
    if min_classes > 1:
        expected += f", num_classes >= {min_classes}"
    raise BadInputError.for_argument("model", expected, _describe_output(output))


def _describe_output(output: Any) -> str:
    if isinstance(output, dict):
        return f"a dict with keys {list(output)}"
    if isinstance(output, tuple | list):
        return f"a {type(output).__name__} of {len(output)}"
    if isinstance(output, Tensor):
        return f"an output of shape {tuple(output.shape)}"
    return describe(output)


def check_class_indices(
    indices: Tensor, num_classes: int | None, name: str = "target", expected: str | None = None
) -> Tensor:
    """Return ``indices`` when every one is in ``[0, num_classes)`` (``>= 0`` when unknown).

    Args:
        indices: Integer class indices, any shape, at least one.
        num_classes: The width of the model's output, if known.
        name: The argument as the user typed it.
        expected: The message's wording of the range (default ``"class indices in [0, K)"``).

    Example:
        >>> import torch
        >>> check_class_indices(torch.tensor([0, 9]), 4)
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `target`: expected class indices in [0, 4), ...
    """
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        default = f"class indices in [0, {num_classes})" if num_classes else "class indices >= 0"
        raise BadInputError.for_argument(name, expected or default, f"indices from {low} to {high}")
    return indices


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
