"""``timm.create_model`` with every failure turned into a one-line error.

Used by ``dave-lightning explain`` and by the demo's ``ImageClassifier``, whose users see the
message on the command line.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import timm
from torch import nn

from dave_lightning.errors import ModelCreationError

__all__ = ["create_model", "first_line", "hub_reachable"]

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
_CONNECT_TIMEOUT_S = 3.0


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


def hub_reachable(timeout: float = _CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face Hub opens within ``timeout`` seconds.

    Behind a proxy (``HTTPS_PROXY`` and friends) the answer is ``True``: the hub client knows
    how to go through it and a direct connection proves nothing.
    """
    if any(os.environ.get(variable) for variable in _PROXY_VARIABLES):
        return True
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _offline_unless_reachable() -> Iterator[None]:
    """Hub offline mode while inside, when the hub cannot be reached: no 55 s of retries.

    Offline mode still loads weights already in the local cache. The flag is restored on exit.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def create_model(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model``, with every failure turned into a one-line error.

    Args:
        name: A timm model name.
        pretrained: Load timm's pretrained weights (needs network access or a local copy; when
            the hub cannot be reached within 3 s, only the local cache is tried).
        **kwargs: Further ``timm.create_model`` arguments.

    Returns:
        The model.

    Raises:
        ModelCreationError: For an unknown name, arguments the model does not take, pretrained
            weights that cannot be fetched, or any other failure while building.
    """
    try:
        if pretrained:
            with _offline_unless_reachable():
                model: nn.Module = timm.create_model(name, pretrained=True, **kwargs)
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as error:  # timm, the hub and model constructors raise many types
        raise ModelCreationError(_creation_problem(name, pretrained, kwargs, error)) from None
    return model
