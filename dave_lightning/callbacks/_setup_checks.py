"""What the monitor checks before any attribution, with errors that name the option to change.

At construction the figure folder; at setup the network (``model_attribute``), its patch size,
and display statistics and patch size against its input; once the probe is chosen the same
options against the images and one forward pass (the network must return logits). Models the
methods cannot explain as a whole are refused with the fix (``model_attribute=``). A
LightningModule is attributed as a whole unless ``model_attribute`` names the classifier inside
it; one holding an EMA copy, a teacher or a module effective mode cannot freeze (e.g. an unused
``BatchNorm``) is refused by the methods, and the monitor shortens that refusal to the fix.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dave_lightning._common import check_class_indices, check_logits
from dave_lightning.callbacks._precision import float32_network
from dave_lightning.callbacks._training_state import preserved_training_state
from dave_lightning.errors import ConfigurationError, UnsupportedModelError

__all__ = [
    "check_against_images",
    "check_against_model",
    "check_figure_dir",
    "check_network_output",
    "display_stats",
    "input_channels",
    "input_size",
    "network_patch_size",
    "resolve_network",
    "short_unsupported_error",
]


def resolve_network(
    pl_module: nn.Module, model_attribute: str | None, grid_full_resolution: bool
) -> nn.Module:
    """The classifier the monitor explains: ``pl_module`` or the module at ``model_attribute``.

    Raises:
        ConfigurationError: When the attribute path is missing or not a module, or
            ``grid_full_resolution`` is asked of a model without ``dynamic_img_size``.
    """
    attribute = model_attribute
    network = pl_module
    if attribute is not None:
        try:
            network = operator.attrgetter(attribute)(pl_module)
        except AttributeError:
            raise ConfigurationError(
                f"`model_attribute`: expected an attribute path of the LightningModule to "
                f"the network, received {attribute!r} (not found)."
            ) from None
        if not isinstance(network, nn.Module):
            raise ConfigurationError(
                f"`model_attribute`: {attribute!r} is a {type(network).__name__}, not a module."
            )
    if grid_full_resolution and not any(
        getattr(module, "dynamic_img_size", False) for module in network.modules()
    ):
        raise ConfigurationError(
            "`grid_full_resolution`: expected a model built with dynamic_img_size=True "
            "(grids are grid_size times larger than its input), received one without it."
        )
    return network


def display_stats(
    network: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Any, Any]:
    """Mean and std that map probe images back to display space: the options, else timm's."""
    if mean is not None:
        return mean, std
    for module in network.modules():
        cfg = getattr(module, "pretrained_cfg", None)
        if isinstance(cfg, dict) and "mean" in cfg and "std" in cfg:
            return cfg["mean"], cfg["std"]
    return None, None


def network_patch_size(network: nn.Module, override: int | None) -> tuple[int, int]:
    """The ViT's patch size (from timm's ``patch_embed``), or ``override`` when given."""
    if override is not None:
        return (override, override)
    for module in network.modules():
        size = getattr(getattr(module, "patch_embed", None), "patch_size", None)
        if isinstance(size, tuple) and len(size) == 2:
            return (int(size[0]), int(size[1]))
    raise ConfigurationError(
        "`metrics`: 'patch_artifact' needs the model's patch size; the network has no timm "
        "`patch_embed.patch_size`, so pass `patch_size=` to the monitor."
    )


def check_figure_dir(figure_dir: str | None) -> None:
    """``figure_dir`` must be a folder or a path where one can be made (no file on the way).

    Example:
        >>> check_figure_dir(None)
        >>> check_figure_dir(__file__)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dave_lightning.errors.ConfigurationError: `figure_dir`: expected a folder ...
    """
    if figure_dir is None:
        return
    path = Path(figure_dir)
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            which = "a file" if candidate == path else f"inside the file {str(candidate)!r}"
            raise ConfigurationError(
                "`figure_dir`: expected a folder or a path where one can be made, received "
                f"{figure_dir!r} ({which})."
            )


def _patch_embed(network: nn.Module) -> Any:
    return next(
        (m.patch_embed for m in network.modules() if hasattr(m, "patch_embed")),
        None,
    )


def input_channels(network: nn.Module) -> int | None:
    """The channels the network's patch embedding takes (timm ViTs), or ``None``."""
    projection = getattr(_patch_embed(network), "proj", None)
    return int(projection.in_channels) if isinstance(projection, nn.Conv2d) else None


def input_size(network: nn.Module) -> tuple[int, int] | None:
    """The fixed input size of a timm ViT (``None`` when unknown or dynamic)."""
    embed = _patch_embed(network)
    size = getattr(embed, "img_size", None)
    if getattr(embed, "dynamic_img_size", False) or not isinstance(size, tuple):
        return None
    return (int(size[0]), int(size[1]))


def _check_display_stats(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int | None, where: str
) -> None:
    if mean is None or std is None or channels is None:
        return
    for name, values in (("display_mean", mean), ("display_std", std)):
        if len(values) != channels:
            raise ConfigurationError(
                f"`{name}`: expected {channels} values (one per channel of {where}), received "
                f"{len(values)}: {tuple(values)!r}."
            )


def _check_patch_size(
    patch_size: tuple[int, int] | None, size: tuple[int, int] | None, where: str
) -> None:
    if patch_size is None or size is None:
        return
    if size[0] % patch_size[0] or size[1] % patch_size[1]:
        raise ConfigurationError(
            f"`patch_size`: expected a size that divides {where} ({size[0]}x{size[1]}), "
            f"received {patch_size[0]}x{patch_size[1]}."
        )


def check_against_model(
    network: nn.Module,
    display_mean: Sequence[float] | None,
    display_std: Sequence[float] | None,
    patch_size: tuple[int, int] | None,
) -> None:
    """At setup: display statistics and patch size fit the model's input."""
    _check_display_stats(display_mean, display_std, input_channels(network), "the model's input")
    _check_patch_size(patch_size, input_size(network), "the model's input size")


def check_against_images(
    shape: Sequence[int],
    display_mean: Sequence[float] | None,
    display_std: Sequence[float] | None,
    patch_size: tuple[int, int] | None,
) -> None:
    """Once the probe is chosen: display statistics and patch size fit its ``(N, C, H, W)``."""
    _check_display_stats(display_mean, display_std, int(shape[1]), "the validation images")
    _check_patch_size(patch_size, (int(shape[2]), int(shape[3])), "the validation images")


_SHOWN = 3
"""How many offending modules a shortened error names."""


def _classifier_candidates(pl_module: nn.Module) -> list[str]:
    """Direct attributes of the LightningModule that look like a classifier (a timm network)."""
    return [
        name
        for name, child in pl_module.named_children()
        if any(hasattr(module, "patch_embed") for module in child.modules())
        or hasattr(child, "get_classifier")
    ]


def short_unsupported_error(
    pl_module: nn.Module, method: str, error: UnsupportedModelError
) -> UnsupportedModelError:
    r"""A few lines that name the first offending modules and point to ``model_attribute=``.

    Example:
        >>> from torch import nn
        >>> error = UnsupportedModelError("cannot freeze X; offending modules:\n  'a': ...\n"
        ...                               "  'b': ...\nSupported:\n  ...")
        >>> print(short_unsupported_error(nn.Sequential(), "dave", error))
        ... # doctest: +NORMALIZE_WHITESPACE
        AttributionMonitor: method 'dave' cannot explain the LightningModule Sequential as a whole
        ('a': ...; 'b': ...). Pass `model_attribute=` with the attribute path of the classifier
        inside it.
    """
    lines = str(error).splitlines()
    offending = [line.strip() for line in lines if line.startswith("  '")]
    shown = "; ".join(offending[:_SHOWN]) or (lines[0] if lines else type(error).__name__)
    more = len(offending) - _SHOWN
    shown += f"; and {more} more" if more > 0 else ""
    candidates = _classifier_candidates(pl_module)
    hint = (
        f", e.g. model_attribute={candidates[0]!r}"
        + (f" (candidates: {', '.join(map(repr, candidates))})" if len(candidates) > 1 else "")
        if candidates
        else ""
    )
    return UnsupportedModelError(
        f"AttributionMonitor: method {method!r} cannot explain the LightningModule "
        f"{type(pl_module).__name__} as a whole ({shown}). Pass `model_attribute=` with the "
        f"attribute path of the classifier inside it{hint}."
    )


def check_network_output(
    network: nn.Module, images: Tensor, labels: Tensor | None, float32: bool
) -> None:
    """One forward on one probe image: the network must return ``(B, num_classes)`` logits.

    Run before any attribution (training state restored). With ``labels`` (``target="label"``)
    the labels must be classes of that output.

    Raises:
        BadInputError: Naming ``model`` (a dict, tuple or other output) or ``batch labels``.
    """
    with (
        preserved_training_state(network),
        torch.inference_mode(False),
        torch.no_grad(),
        float32_network(network, float32),
    ):
        network.eval()
        parameter = next(network.parameters())
        output: Any = network(images[:1].to(parameter.device, parameter.dtype))
    width = check_logits(output).shape[1]
    if labels is not None and len(labels):
        expected = f"class indices in [0, {width}) (the width of the model's output)"
        check_class_indices(labels, width, "batch labels", expected)
