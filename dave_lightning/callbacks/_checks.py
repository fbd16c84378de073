"""Options checked against the model at setup and against the probe images once chosen.

Each mismatch is a :class:`~dave_lightning.errors.ConfigurationError` naming the option, before
any attribution, instead of a failure at every evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from dave_lightning.errors import ConfigurationError

__all__ = [
    "check_against_images",
    "check_against_model",
    "check_figure_dir",
    "input_channels",
    "input_size",
]


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
