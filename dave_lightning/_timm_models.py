"""``timm.create_model`` with every failure turned into a one-line error.

Used by ``dave-lightning explain`` and by the demo's ``ImageClassifier``, whose users see the
message on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
from torch import nn

from dave_lightning.errors import ModelCreationError

__all__ = ["create_model", "first_line"]


def first_line(error: BaseException) -> str:
    """The first line of an error's message (empty when it has none)."""
    return (str(error).strip().splitlines() or [""])[0]


def _creation_problem(
    name: str, pretrained: bool, kwargs: Mapping[str, Any], error: Exception
) -> str:
    detail = f"{type(error).__name__}: {first_line(error)}"
    if isinstance(error, RuntimeError) and "Unknown model" in str(error):
        return f"unknown timm model {name!r} (see timm.list_models())"
    if pretrained and isinstance(error, OSError):  # hub and download errors are OSErrors
        return (
            f"cannot fetch the pretrained weights of {name!r} (no network and no local copy?): "
            f"{detail}"
        )
    if isinstance(error, TypeError) and kwargs:
        return f"timm model {name!r} does not take the arguments {dict(kwargs)}: {detail}"
    return f"cannot create timm model {name!r}: {detail}"


def create_model(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model``, with every failure turned into a one-line error.

    Args:
        name: A timm model name.
        pretrained: Load timm's pretrained weights (needs network access or a local copy).
        **kwargs: Further ``timm.create_model`` arguments.

    Returns:
        The model.

    Raises:
        ModelCreationError: For an unknown name, arguments the model does not take, pretrained
            weights that cannot be fetched, or any other failure while building.
    """
    try:
        model: nn.Module = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as error:  # timm, the hub and model constructors raise many types
        raise ModelCreationError(_creation_problem(name, pretrained, kwargs, error)) from None
    return model
