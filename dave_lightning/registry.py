"""Every attribution method by name: ``get_attributor(name, model, **options)``.

Built-in names and the class each builds (see the class for its options; every one also takes
``max_batch_size`` and ``autocast_dtype``). A method's module is imported when the method is
first asked for, so listing the names, or building DAVE or Step I, never imports Captum:

* ``"dave"`` — :class:`~dave_lightning.DAVE` (``num_samples``, ``noise_alpha``, ``flip_prob``,
  ``rotation``, ``translation``, ``scale``, ``aggregation``, ``seed``, ``memory_budget_mb``,
  ``affine_modules``, ``calibration_options``, ``compile``)
* ``"gradient"`` — :class:`~dave_lightning.baselines.Gradient`
* ``"input_x_gradient"`` — :class:`~dave_lightning.baselines.InputXGradient`
* ``"integrated_gradients"`` — :class:`~dave_lightning.baselines.IntegratedGradients`
  (``n_steps``, ``method``, ``baseline``)
* ``"smoothgrad"`` — :class:`~dave_lightning.baselines.SmoothGrad` (``nt_samples``, ``stdevs``,
  ``noise_level``, ``seed``)
* ``"effective_input_x_gradient"`` — :class:`~dave_lightning.baselines.EffectiveInputXGradient`
  (``affine_modules``)
* ``"legrad"`` — :class:`~dave_lightning.baselines.LeGrad` (``min_max``)
* ``"random"`` — :class:`~dave_lightning.baselines.RandomAttributor` (``seed``, ``distribution``)

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> smoothgrad = get_attributor("smoothgrad", model, nt_samples=4, seed=1)
    >>> smoothgrad.attribute(torch.randn(2, 3, 32, 32), target=0).shape
    torch.Size([2, 32, 32])
    >>> get_attributor("smoothgrad", model, samples=4)
    Traceback (most recent call last):
    ...
    dave_lightning.errors.ConfigurationError: `smoothgrad`: unknown option 'samples'; ...
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from dave_lightning.attributor import Attributor
from dave_lightning.errors import BadInputError, ConfigurationError

__all__ = ["AttributorFactory", "available_attributors", "get_attributor", "register_attributor"]

AttributorFactory = Callable[..., Attributor]
"""Anything called as ``factory(model, **options)`` that returns an :class:`Attributor`."""


@dataclass(frozen=True)
class _NotImported:
    """A built-in factory named by module and attribute, imported when first asked for.

    So building DAVE or Step I never imports Captum (which only some baselines use).
    """

    module: str
    attribute: str

    def load(self) -> AttributorFactory:
        factory: AttributorFactory = getattr(importlib.import_module(self.module), self.attribute)
        return factory


_REGISTRY: dict[str, AttributorFactory | _NotImported] = {
    "dave": _NotImported("dave_lightning.dave", "DAVE"),
    "gradient": _NotImported("dave_lightning.baselines.gradient", "Gradient"),
    "input_x_gradient": _NotImported("dave_lightning.baselines.gradient", "InputXGradient"),
    "integrated_gradients": _NotImported(
        "dave_lightning.baselines.integrated_gradients", "IntegratedGradients"
    ),
    "smoothgrad": _NotImported("dave_lightning.baselines.smoothgrad", "SmoothGrad"),
    "effective_input_x_gradient": _NotImported(
        "dave_lightning.baselines.effective_gradient", "EffectiveInputXGradient"
    ),
    "legrad": _NotImported("dave_lightning.baselines.legrad", "LeGrad"),
    "random": _NotImported("dave_lightning.baselines.random_map", "RandomAttributor"),
}
"""Name -> factory; built-ins stay :class:`_NotImported` until :func:`_lookup` first loads them."""


def available_attributors() -> tuple[str, ...]:
    """The registered names: the built-ins in documented order, then user ones as registered.

    Example:
        >>> available_attributors()[:3]
        ('dave', 'gradient', 'input_x_gradient')
    """
    return tuple(_REGISTRY)


def register_attributor(name: str, factory: AttributorFactory, *, overwrite: bool = False) -> None:
    """Make ``factory`` reachable as ``get_attributor(name, model, **options)``.

    Args:
        name: A non-empty name without whitespace.
        factory: Called as ``factory(model, **options)``; must return an :class:`Attributor`
            (an ``Attributor`` subclass itself is the usual factory).
        overwrite: Replace an existing entry of that name (built-ins included).

    Raises:
        BadInputError: For an invalid name or a factory that is not callable.
        ConfigurationError: When ``name`` is taken and ``overwrite`` is false.

    Example:
        >>> from dave_lightning.baselines import Gradient
        >>> register_attributor("my_gradient", Gradient)
        >>> "my_gradient" in available_attributors()
        True
        >>> register_attributor("gradient", Gradient)
        Traceback (most recent call last):
        ...
        dave_lightning.errors.ConfigurationError: an attributor named 'gradient' is already ...
    """
    if not isinstance(name, str) or not name or name != "".join(name.split()):
        raise BadInputError.for_argument(
            "name", "a non-empty string without whitespace", repr(name)
        )
    if not callable(factory):
        raise BadInputError.for_argument(
            "factory", "a callable returning an Attributor", repr(factory)
        )
    if name in _REGISTRY and not overwrite:
        raise ConfigurationError(
            f"an attributor named {name!r} is already registered ({_loaded(name)!r}); pass "
            "`overwrite=True` to replace it."
        )
    _REGISTRY[name] = factory


def get_attributor(name: str, model: nn.Module, /, **options: Any) -> Attributor:
    """Build the attribution method registered as ``name`` for ``model``.

    Args:
        name: One of :func:`available_attributors`.
        model: The classifier to explain.
        **options: The method's keyword options (see the module docstring).

    Returns:
        The attributor; call ``.attribute(images, target)`` on it.

    Raises:
        ConfigurationError: For an unknown name (listing the available ones) or an option the
            method does not take (listing the ones it does).
        BadInputError: For an option value the method rejects, naming the option.
        UnsupportedModelError: When the method cannot explain ``model``.

    Example:
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
        ...                           num_heads=2, num_classes=4)
        >>> get_attributor("integrated_gradients", model, n_steps=16)
        IntegratedGradients(n_steps=16, method='gausslegendre', max_batch_size=64)
        >>> get_attributor("legrad", model, nt_samples=8)
        Traceback (most recent call last):
        ...
        dave_lightning.errors.ConfigurationError: `legrad`: unknown option 'nt_samples'; ...
    """
    factory = _lookup(name)
    _check_options(name, factory, options)
    attributor = factory(model, **options)
    if not isinstance(attributor, Attributor):
        raise ConfigurationError(
            f"the factory registered as {name!r} returned {type(attributor).__qualname__}, "
            "not an Attributor."
        )
    return attributor


def _loaded(name: str) -> AttributorFactory:
    """The factory registered as ``name``, importing a built-in's module the first time."""
    entry = _REGISTRY[name]
    if isinstance(entry, _NotImported):
        entry = _REGISTRY[name] = entry.load()
    return entry


def _lookup(name: Any) -> AttributorFactory:
    if isinstance(name, str) and name in _REGISTRY:
        return _loaded(name)
    close = (
        difflib.get_close_matches(name, _REGISTRY, n=1, cutoff=0.75)
        if isinstance(name, str)
        else []
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigurationError(
        f"unknown attributor {name!r}{hint}; available: "
        + ", ".join(map(repr, _REGISTRY))
        + ". Add your own with `register_attributor(name, factory)`."
    )


def _check_options(name: str, factory: AttributorFactory, options: dict[str, Any]) -> None:
    """Fail before construction when ``factory`` does not take one of ``options``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a factory without a signature: it reports its own errors
    try:
        signature.bind(None, **options)
    except TypeError as error:
        accepted = [
            parameter.name
            for parameter in list(signature.parameters.values())[1:]
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        ]
        unknown = sorted(set(options) - set(signature.parameters))
        what = f"unknown option {', '.join(map(repr, unknown))}" if unknown else f"{error}"
        raise ConfigurationError(
            f"`{name}`: {what}; it takes {', '.join(map(repr, accepted)) or 'no options'}."
        ) from None
