"""Lazy package attributes: a public name's module is imported when the name is first used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module-level ``__getattr__`` and ``__dir__`` for names kept in submodules.

    Args:
        package: The package's name, for the error of an unknown attribute.
        exports: Each public name -> the module that defines it.
        namespace: The package's ``globals()``; a name, once imported, is stored there, so later
            lookups no longer reach ``__getattr__``.

    Example:
        >>> namespace = {"__all__": ["sqrt"]}
        >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, namespace)
        >>> getattr_("sqrt")(9.0), "sqrt" in namespace, dir_()
        (3.0, True, ['__all__', 'sqrt'])
        >>> getattr_("cbrt")
        Traceback (most recent call last):
        ...
        AttributeError: module 'pkg' has no attribute 'cbrt'
    """

    def get_attribute(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def list_attributes() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return get_attribute, list_attributes
