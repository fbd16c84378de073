"""The monitor's options, checked once at construction with messages that list valid values."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from dave_lightning.callbacks._checks import check_figure_dir
from dave_lightning.dave import check_noise_alpha
from dave_lightning.errors import ConfigurationError
from dave_lightning.metrics.functional.pixel_deletion import _check_deletion_options
from dave_lightning.registry import available_attributors
from dave_lightning.transforms import LocalTransformDistribution

__all__ = ["METRIC_DIRECTIONS", "MonitorConfig"]

METRIC_DIRECTIONS: dict[str, str] = {
    "grid_pg": "higher is better",
    "energy_pg": "higher is better",
    "deletion_auc": "depends on the deletion order",
    "patch_artifact": "lower is better",
}
"""The metrics the monitor computes, and which way each improves."""

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
_AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


def _fail(name: str, expected: str, received: Any) -> ConfigurationError:
    return ConfigurationError(f"`{name}`: expected {expected}, received {received!r}.")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(name, f"an integer >= {minimum}", value)


def _check_choice(name: str, value: Any, valid: Sequence[str | None]) -> None:
    if value not in valid:
        raise _fail(name, "one of " + ", ".join(map(repr, valid)), value)


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


@dataclass(frozen=True)
class MonitorConfig:
    """Every option of :class:`~dave_lightning.callbacks.AttributionMonitor`, validated."""

    methods: tuple[str, ...] = ("dave",)
    metrics: tuple[str, ...] = ("grid_pg", "energy_pg", "deletion_auc")
    num_images: int = 32
    num_samples: int = 50
    noise_alpha: float | str | None = None
    flip_prob: float = 0.5
    rotation: float = 20.0
    translation: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    aggregation: str = "robust"
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_batch_size: int | str = "auto"
    every_n_epochs: int | None = None
    every_n_validations: int | None = None
    log_images: int = 8
    target: str = "label"
    grid_size: int = 2
    max_grids: int = 8
    grid_min_confidence: float | None = None
    grid_full_resolution: bool = False
    deletion_steps: int = 20
    deletion_max_fraction: float = 1.0
    deletion_order: str = "most_relevant_first"
    deletion_replacement: str = "blur"
    deletion_batch_size: int = 64
    seed: int = 0
    log_prefix: str = "explain"
    on_error: str = "warn"
    batch_transform: Callable[[Any], Any] | None = None
    model_attribute: str | None = None
    autocast: str | None = None
    display_mean: tuple[float, ...] | None = None
    display_std: tuple[float, ...] | None = None
    dataloader_idx: int = 0
    patch_size: int | None = None
    figure_dir: str | None = None
    recalibrate_noise_every_evaluation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "methods", _check_names("methods", self.methods, available_attributors())
        )
        object.__setattr__(
            self, "metrics", _check_names("metrics", self.metrics, tuple(METRIC_DIRECTIONS))
        )
        for name, minimum in (
            ("num_images", 1),
            ("num_samples", 1),
            ("log_images", 0),
            ("grid_size", 2),
            ("max_grids", 1),
            ("seed", 0),
            ("dataloader_idx", 0),
        ):
            _check_int(name, getattr(self, name), minimum)
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
        _check_deletion_options(
            self.deletion_steps,
            self.deletion_max_fraction,
            self.deletion_order,
            self.deletion_replacement,
            "softmax",
            self.deletion_batch_size,
            self.seed,
            31,
            7.0,
        )
        _check_choice("target", self.target, ("label", "pred"))
        _check_choice("on_error", self.on_error, ("warn", "raise"))
        _check_choice("autocast", self.autocast, (None, *_AUTOCAST))
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
            _check_int("patch_size", self.patch_size, 1)
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
        check_figure_dir(self.figure_dir)

    def _check_schedule(self) -> None:
        for name in ("every_n_epochs", "every_n_validations"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.every_n_epochs is not None and self.every_n_validations is not None:
            raise _fail(
                "every_n_epochs/every_n_validations",
                "at most one of them (None for the other)",
                (self.every_n_epochs, self.every_n_validations),
            )

    def _check_dave_options(self) -> None:
        if not isinstance(self.scale, list | tuple) or len(self.scale) != 2:
            raise _fail("scale", "a (low, high) pair such as (0.9, 1.1)", self.scale)
        try:
            LocalTransformDistribution(self.flip_prob, self.rotation, self.translation, self.scale)
            if self.noise_alpha not in (None, "auto"):
                check_noise_alpha(self.noise_alpha, "a number in [0, 1), None or 'auto'")
        except ConfigurationError:
            raise
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        _check_choice("aggregation", self.aggregation, ("robust", "mean"))

    def _check_dave_is_chosen(self) -> None:
        """DAVE's options set without "dave" in ``methods`` would be ignored: say so instead."""
        if "dave" in self.methods:
            return
        defaults = {option.name: option.default for option in fields(self)}
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
        if not isinstance(self.method_options, Mapping):
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
    def autocast_dtype_name(self) -> str | None:
        """``"bfloat16"``/``"float16"`` when autocast is opted in, else ``None``."""
        return None if self.autocast is None else _AUTOCAST[self.autocast]

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
        options.update(self.method_options.get(method, {}))
        return options
