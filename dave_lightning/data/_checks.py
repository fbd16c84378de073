"""Private argument checks of :mod:`dave_lightning.data`, raising :class:`BadInputError`."""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dave_lightning._common import check_choice, check_int, describe, is_integer
from dave_lightning.errors import BadInputError

__all__ = [
    "check_choice",
    "check_fraction",
    "check_image_batch",
    "check_image_size",
    "check_index",
    "check_int",
    "check_labels",
    "check_names",
    "check_triple",
    "describe",
]


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float when it is a real number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BadInputError.for_argument(name, "a number in [0, 1]", describe(value))
    return float(value)


def check_triple(name: str, value: Any, *, positive: bool = False) -> tuple[float, float, float]:
    """Return ``value`` as three floats (one per colour channel), positive when asked."""
    expected = "three positive numbers" if positive else "three numbers"
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise BadInputError.for_argument(name, expected, describe(value)) from None
    if len(numbers) != 3 or not all(math.isfinite(n) for n in numbers):
        raise BadInputError.for_argument(name, expected, describe(value))
    if positive and min(numbers) <= 0:
        raise BadInputError.for_argument(name, expected, describe(value))
    return numbers[0], numbers[1], numbers[2]


def check_labels(labels: Any, count: int | None = None) -> Tensor:
    """Return ``labels`` as a 1-D (``(count,)``) int64 CPU tensor of non-negative classes."""
    expected = f"a ({'N' if count is None else count},) integer tensor of non-negative classes"
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise BadInputError.for_argument("labels", expected, describe(labels)) from None
    wrong_dtype = labels.dtype.is_floating_point or labels.dtype.is_complex
    if labels.numel() > 0 and (wrong_dtype or labels.dtype == torch.bool):
        raise BadInputError.for_argument("labels", expected, describe(labels))
    if labels.dim() != 1 or (count is not None and labels.shape[0] != count):
        raise BadInputError.for_argument("labels", expected, describe(labels))
    if labels.numel() > 0 and int(labels.min()) < 0:
        raise BadInputError.for_argument("labels", expected, describe(labels))
    return labels.detach().to("cpu", torch.long)


def check_image_batch(images: Any) -> Tensor:
    """Return ``images`` when it is a floating ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise BadInputError.for_argument(
            "images", "a floating-point (N, C, H, W) tensor", describe(images)
        )
    return images


def check_index(index: Any) -> int:
    """Return ``index`` as an int when it is one (numpy and 0-d integer tensors included)."""
    if not isinstance(index, bool):
        with contextlib.suppress(TypeError):
            return operator.index(index)
    raise BadInputError.for_argument("index", "an integer", describe(index))


def check_image_size(image_size: Any, minimum: int) -> tuple[int, int]:
    """Return ``(H, W)`` from an int or a pair of ints, each at least ``minimum``."""
    expected = f"an integer or an (H, W) pair of integers, each >= {minimum}"
    sides = (image_size, image_size) if isinstance(image_size, int) else image_size
    if (
        not isinstance(sides, (tuple, list))
        or len(sides) != 2
        or any(not is_integer(s) or s < minimum for s in sides)
    ):
        raise BadInputError.for_argument("image_size", expected, describe(image_size))
    return int(sides[0]), int(sides[1])


def check_names(name: str, value: Any, allowed: Sequence[str], minimum: int) -> list[str]:
    """Return ``value`` as a list of at least ``minimum`` distinct names from ``allowed``."""
    expected = f"at least {minimum} distinct names from {', '.join(allowed)}"
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise BadInputError.for_argument(name, expected, describe(value))
    names = list(value)
    if not all(isinstance(item, str) for item in names):
        raise BadInputError.for_argument(name, expected, describe(value))
    if len(names) < minimum or len(set(names)) != len(names) or not set(names) <= set(allowed):
        raise BadInputError.for_argument(name, expected, describe(value))
    return names
