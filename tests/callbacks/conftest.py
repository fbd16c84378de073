"""Fixtures of the callback tests: attributors registered for one test only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dave_lightning.registry import _REGISTRY, register_attributor
from tests.callbacks.helpers import Spy


@pytest.fixture
def spy() -> Iterator[type[Spy]]:
    """``"spy"``: the gradient baseline recording what each call saw (in ``Spy.calls``)."""
    register_attributor("spy", Spy, overwrite=True)
    Spy.calls.clear()
    yield Spy
    Spy.calls.clear()
    _REGISTRY.pop("spy")
