"""The monitor's options: declared once here, each checked once at construction.

:class:`MonitorConfig` is the single declaration of
:class:`~dave_lightning.callbacks.AttributionMonitor`'s options, in its argument order: the
monitor's signature is built from these fields. Defaults that belong to another component are read
from it, never copied: DAVE's from :class:`~dave_lightning.DAVE`'s signature, pixel deletion's
from :class:`~dave_lightning.metrics.DeletionOptions`.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from dave_lightning._common import check_choice, check_int
from dave_lightning.callbacks._metrics import MONITOR_METRICS
from dave_lightning.callbacks._setup_checks import check_figure_dir
from dave_lightning.dave import DAVE, check_noise_alpha
from dave_lightning.errors import BadInputError, ConfigurationError
from dave_lightning.metrics import DeletionOptions
from dave_lightning.precision import AUTOCAST_CHOICES
from dave_lightning.registry import available_attributors
from dave_lightning.transforms import LocalTransformDistribution

__all__ = ["DAVE_DEFAULTS", "MonitorConfig", "monitor_config", "monitor_signature"]

DAVE_DEFAULTS: dict[str, Any] = {
    name: parameter.default for name, parameter in inspect.signature(DAVE).parameters.items()
}
"""DAVE's own defaults, by argument name (the monitor's DAVE options default to these)."""
_DELETION = DeletionOptions()
"""Pixel deletion's own defaults (the monitor's ``deletion_*`` options default to these)."""
_DAVE_OPTIONS = (
    "num_samples",
    "noise_alpha",
    "flip_prob",
    "rotation",
    "translation",
    "scale",
    "aggregation",
)
_DAVE_ONLY = tuple(name for name in _DAVE_OPTIONS if name != "num_samples")
"""DAVE's options that need "dave" in ``methods`` when changed from their defaults.

``num_samples`` is left out: callers such as the demo pass it whatever the methods are."""
_DELETION_NAMES = {
    "steps": "deletion_steps",
    "max_fraction": "deletion_max_fraction",
    "order": "deletion_order",
    "replacement": "deletion_replacement",
    "batch_size": "deletion_batch_size",
    "seed": "seed",
}
"""The monitor's name of each :class:`DeletionOptions` field it sets."""


def _fail(name: str, expected: str, received: Any) -> ConfigurationError:
    return ConfigurationError(f"`{name}`: expected {expected}, received {received!r}.")


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check_names(name: str, values: Any, valid: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise _fail(name, "a non-empty list of names from " + ", ".join(map(repr, valid)), values)
    unknown = [value for value in values if value not in valid]
    if unknown:
        raise _fail(name, "names from " + ", ".join(map(repr, valid)), unknown)
    if len(set(values)) != len(values):
        raise _fail(name, "each name once", list(values))
    return tuple(values)


def _deletion_options(config: MonitorConfig) -> DeletionOptions:
    """The monitor's pixel-deletion options; errors name the monitor's arguments."""
    try:
        return DeletionOptions(
            **{option: getattr(config, name) for option, name in _DELETION_NAMES.items()}
        )
    except BadInputError as error:
        message = re.sub(r"^`(\w+)`", lambda m: f"`{_DELETION_NAMES[m[1]]}`", str(error))
        raise ConfigurationError(message) from None


@dataclass(frozen=True)
class MonitorConfig:
    """Every option of :class:`~dave_lightning.callbacks.AttributionMonitor`, validated.

    Sequences are stored as tuples, ``method_options`` as a dict, ``figure_dir`` as a string.
    """

    methods: Sequence[str] = ("dave",)
    metrics: Sequence[str] = ("grid_pg", "energy_pg", "deletion_auc")
    num_images: int = 32
    num_samples: int = DAVE_DEFAULTS["num_samples"]
    noise_alpha: float | str | None = DAVE_DEFAULTS["noise_alpha"]
    flip_prob: float = DAVE_DEFAULTS["flip_prob"]
    rotation: float = DAVE_DEFAULTS["rotation"]
    translation: float = DAVE_DEFAULTS["translation"]
    scale: tuple[float, float] = DAVE_DEFAULTS["scale"]
    aggregation: str = DAVE_DEFAULTS["aggregation"]
    method_options: Mapping[str, Mapping[str, Any]] | None = None
    max_batch_size: int | str = "auto"
    every_n_epochs: int | None = None
    every_n_validations: int | None = None
    log_images: int = 8
    target: str = "label"
    grid_size: int = 2
    max_grids: int = 8
    grid_min_confidence: float | None = None
    grid_full_resolution: bool = False
    deletion_steps: int = _DELETION.steps
    deletion_max_fraction: float = _DELETION.max_fraction
    deletion_order: str = _DELETION.order
    deletion_replacement: str = _DELETION.replacement  # type: ignore[assignment]
    deletion_batch_size: int = _DELETION.batch_size
    seed: int = 0
    log_prefix: str = "explain"
    on_error: str = "warn"
    batch_transform: Callable[[Any], Any] | None = None
    model_attribute: str | None = None
    autocast: str | None = "auto"
    display_mean: Sequence[float] | None = None
    display_std: Sequence[float] | None = None
    dataloader_idx: int = 0
    patch_size: int | None = None
    figure_dir: str | None = None
    recalibrate_noise_every_evaluation: bool = False
    deletion: DeletionOptions = field(init=False, repr=False, compare=False)
    """The ``deletion_*`` options (and ``seed``) as pixel deletion's checked options object."""

    def __post_init__(self) -> None:
        self._normalise()
        self._set("methods", _check_names("methods", self.methods, available_attributors()))
        self._set("metrics", _check_names("metrics", self.metrics, tuple(MONITOR_METRICS)))
        for name, minimum in (
            ("num_images", 1),
            ("log_images", 0),
            ("grid_size", 2),
            ("max_grids", 1),
            ("seed", 0),
            ("dataloader_idx", 0),
        ):
            check_int(name, getattr(self, name), minimum, error=ConfigurationError)
        if self.max_batch_size != "auto" and (
            isinstance(self.max_batch_size, bool)
            or not isinstance(self.max_batch_size, int)
            or self.max_batch_size < 1
        ):
            raise _fail("max_batch_size", "an integer >= 1 or 'auto'", self.max_batch_size)
        if not isinstance(self.recalibrate_noise_every_evaluation, bool):
            raise _fail(
                "recalibrate_noise_every_evaluation",
                "True or False",
                self.recalibrate_noise_every_evaluation,
            )
        self._check_schedule()
        self._check_dave_options()
        self._check_dave_is_chosen()
        self._set("deletion", _deletion_options(self))
        check_choice("target", self.target, ("label", "pred"), error=ConfigurationError)
        check_choice("on_error", self.on_error, ("warn", "raise"), error=ConfigurationError)
        check_choice("autocast", self.autocast, AUTOCAST_CHOICES, error=ConfigurationError)
        self._check_method_options()
        if not isinstance(self.log_prefix, str) or not self.log_prefix.strip("/"):
            raise _fail("log_prefix", "a non-empty tag prefix such as 'explain'", self.log_prefix)
        if self.batch_transform is not None and not callable(self.batch_transform):
            raise _fail("batch_transform", "a callable or None", self.batch_transform)
        confidence = self.grid_min_confidence
        if confidence is not None and not (
            isinstance(confidence, int | float) and 0 <= confidence < 1
        ):
            raise _fail("grid_min_confidence", "None or a number in [0, 1)", confidence)
        if self.patch_size is not None:
            check_int("patch_size", self.patch_size, 1, error=ConfigurationError)
        self._check_display_stats()
        check_figure_dir(self.figure_dir)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen: only while checking

    def _normalise(self) -> None:
        """Lists as tuples, ``None`` as an empty ``method_options``, a path as a string."""
        for name in ("methods", "metrics", "scale"):
            if isinstance(getattr(self, name), list | tuple):
                self._set(name, tuple(getattr(self, name)))
        for name in ("display_mean", "display_std"):  # any sequence of numbers, e.g. a tensor
            if getattr(self, name) is not None:
                self._set(name, tuple(getattr(self, name)))
        if self.method_options is None:
            self._set("method_options", {})
        elif isinstance(self.method_options, Mapping):
            self._set("method_options", dict(self.method_options))
        if self.figure_dir is not None:
            self._set("figure_dir", str(self.figure_dir))

    def _check_display_stats(self) -> None:
        if (self.display_mean is None) != (self.display_std is None):
            raise _fail(
                "display_mean/display_std", "both or neither", (self.display_mean, self.display_std)
            )
        if self.display_mean is not None and len(self.display_mean) != len(self.display_std or ()):
            raise _fail(
                "display_mean/display_std",
                "as many means as standard deviations (one per channel)",
                (self.display_mean, self.display_std),
            )

    def _check_schedule(self) -> None:
        for name in ("every_n_epochs", "every_n_validations"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1, error=ConfigurationError)
        if self.every_n_epochs is not None and self.every_n_validations is not None:
            raise _fail(
                "every_n_epochs/every_n_validations",
                "at most one of them (None for the other)",
                (self.every_n_epochs, self.every_n_validations),
            )

    def _check_dave_options(self) -> None:
        """DAVE's options, by the rules DAVE and its transform distribution apply themselves."""
        check_int("num_samples", self.num_samples, 1, error=ConfigurationError)
        if not isinstance(self.scale, tuple) or len(self.scale) != 2:
            raise _fail("scale", "a (low, high) pair such as (0.9, 1.1)", self.scale)
        try:  # the distribution's checks are the one statement of the valid ranges
            LocalTransformDistribution(self.flip_prob, self.rotation, self.translation, self.scale)
            if self.noise_alpha not in (None, "auto"):
                check_noise_alpha(self.noise_alpha, "a number in [0, 1), None or 'auto'")
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        check_choice("aggregation", self.aggregation, ("robust", "mean"), error=ConfigurationError)

    def _check_dave_is_chosen(self) -> None:
        """DAVE's options set without "dave" in ``methods`` would be ignored: say so instead."""
        if "dave" in self.methods:
            return
        defaults = {option.name: option.default for option in fields(self) if option.init}
        changed = {
            name: getattr(self, name)
            for name in _DAVE_ONLY
            if _as_tuple(getattr(self, name)) != _as_tuple(defaults[name])
        }
        if changed:
            names = ", ".join(f"`{name}`" for name in changed)
            received = ", ".join(f"{name}={value!r}" for name, value in changed.items())
            verb = "applies" if len(changed) == 1 else "apply"
            raise ConfigurationError(
                f"{names}: {verb} only to the 'dave' method, which is not in `methods` "
                f"{list(self.methods)}; add 'dave' to `methods` or leave {names} at the default "
                f"(received {received})."
            )

    def _check_method_options(self) -> None:
        if not isinstance(self.method_options, Mapping):  # None became {} in _normalise
            raise _fail(
                "method_options", "a mapping {method: {option: value}}", self.method_options
            )
        for method, options in self.method_options.items():
            if method not in self.methods:
                raise _fail(
                    "method_options", f"keys among the chosen methods {list(self.methods)}", method
                )
            if not isinstance(options, Mapping):
                raise _fail(f"method_options[{method!r}]", "a mapping of options", options)
            if method == "dave" and set(options) & set(_DAVE_OPTIONS):
                clash = sorted(set(options) & set(_DAVE_OPTIONS))
                raise _fail(
                    "method_options['dave']", "no options that the monitor sets itself", clash
                )

    @property
    def forward_batch_size(self) -> int:
        """Images per forward-only pass (grid checks): ``max_batch_size``, 64 under ``"auto"``."""
        return 64 if isinstance(self.max_batch_size, str) else self.max_batch_size

    def options_for(self, method: str) -> dict[str, Any]:
        """Keyword options for ``get_attributor(method, model, **options)``."""
        options: dict[str, Any] = {}
        if self.max_batch_size != "auto" or method == "dave":  # others keep their own default
            options["max_batch_size"] = self.max_batch_size
        if method == "dave":
            options.update({name: getattr(self, name) for name in _DAVE_OPTIONS})
            options["scale"] = tuple(self.scale)
            options["seed"] = self.seed
        options.update((self.method_options or {}).get(method, {}))
        return options


def monitor_signature() -> inspect.Signature:
    """The monitor's ``__init__`` signature: one keyword per option, with its default and type.

    Lightning's CLI, ``help()`` and documentation tools read it as if it were written out.
    """
    hints = get_type_hints(MonitorConfig)
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("self", keyword)] + [
        inspect.Parameter(
            option.name, keyword, default=option.default, annotation=hints[option.name]
        )
        for option in fields(MonitorConfig)
        if option.init
    ]
    return inspect.Signature(parameters, return_annotation=None)


def monitor_config(owner: str, args: tuple[Any, ...], options: Mapping[str, Any]) -> MonitorConfig:
    """The options of a monitor built as ``owner(*args, **options)``.

    A keyword that is no option fails first, naming ``owner`` and the closest option.

    Example:
        >>> monitor_config("AttributionMonitor", (), {"num_imags": 4})
        Traceback (most recent call last):
        ...
        TypeError: AttributionMonitor() got an unexpected keyword argument 'num_imags'; did you mean 'num_images'?
    """  # noqa: E501
    names = [option.name for option in fields(MonitorConfig) if option.init]
    for name in options:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the options are " + ", ".join(names)
            raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}; {hint}")
    return MonitorConfig(*args, **options)
