"""The interface every attribution method shares, with its input checks and safety guard.

An :class:`Attributor` is built from a model and keyword options; ``attribute(images, target)``
returns signed pixel maps ``(B, H, W)``, or ``(B, K, H, W)`` for several targets per image. It can
be called from any grad mode (plain, ``no_grad``, ``inference_mode``) and any module mode: it runs
the model in eval mode with gradients enabled, restores every module's mode afterwards, never
writes a parameter's ``.grad``, never changes ``requires_grad`` and never touches the global RNG.
"""

from __future__ import annotations

import contextlib
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dave_lightning._common import (
    check_class_indices,
    check_int,
    check_logits,
    describe,
    restored_modes,
)
from dave_lightning.errors import BadInputError

__all__ = ["Attributor", "Target", "attribution_session", "check_logits"]

Target = int | Sequence[int] | Tensor
"""An int (same class for every image), a ``(B,)`` tensor, or a ``(B, K)`` tensor of classes."""


def _is_timm_like(module: nn.Module) -> bool:
    return all(isinstance(getattr(module, name, None), int) for name in ("num_classes", "in_chans"))


def _declared(model: nn.Module, attribute: str) -> int | None:
    """A positive int ``attribute`` of ``model`` itself or of the first timm-style network in it.

    Below the top level only modules declaring both ``num_classes`` and ``in_chans`` (as timm
    models do) count, so a metric registered on a LightningModule (which may have a
    ``num_classes`` of its own) is never mistaken for the network.
    """
    for module in (model, *filter(_is_timm_like, model.modules())):
        value = getattr(module, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def expected_in_channels(model: nn.Module) -> int | None:
    """The channel count ``model`` takes, when it says so (timm models do)."""
    return _declared(model, "in_chans")


def model_num_classes(model: nn.Module) -> int | None:
    """The width of ``model``'s output, when it can be read without a pass (timm models).

    The classifier head's ``out_features`` (timm's ``get_classifier()``) comes first: a head
    replaced by assignment (``model.head = nn.Linear(...)``) leaves timm's ``num_classes``
    stale, but not the head. Otherwise the declared ``num_classes``.
    """
    for module in (model, *filter(_is_timm_like, model.modules())):
        get_classifier = getattr(module, "get_classifier", None)
        head = get_classifier() if callable(get_classifier) else None
        width = getattr(head, "out_features", None)
        if isinstance(width, int) and width > 0:
            return width
    return _declared(model, "num_classes")


def parameter_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of ``model``'s first floating-point parameter (``None`` without one)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def expected_image_size(model: nn.Module) -> tuple[int, int] | None:
    """The ``(H, W)`` a timm ViT insists on (``strict_img_size``), else ``None``."""
    for module in model.modules():
        embed = getattr(module, "patch_embed", None)
        size = getattr(embed, "img_size", None)
        if getattr(embed, "strict_img_size", False) and isinstance(size, tuple) and len(size) == 2:
            return (int(size[0]), int(size[1]))
    return None


def check_images_fit(
    images: Tensor, dtype: torch.dtype | None, size: tuple[int, int] | None
) -> None:
    """Images in the model's parameter dtype and at the size it insists on (when known)."""
    if dtype is not None and images.dtype != dtype:
        raise BadInputError.for_argument(
            "images",
            f"{dtype} images like the model's parameters (convert with `.to({dtype})`, or opt "
            "in to `autocast_dtype=`)",
            describe(images),
        )
    if size is not None and tuple(images.shape[-2:]) != size:
        raise BadInputError.for_argument(
            "images",
            f"{size[0]}x{size[1]} images, the size the model was built for (B, C, {size[0]}, "
            f"{size[1]})",
            describe(images),
        )


def check_images(images: Any, in_channels: int | None) -> Tensor:
    """Validate a batch of images; reject NaN/inf before any pass is spent."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise BadInputError.for_argument("images", "a 4-D tensor (B, C, H, W)", describe(images))
    if not images.is_floating_point():
        raise BadInputError.for_argument("images", "a floating-point tensor", describe(images))
    if images.shape[0] == 0:
        raise BadInputError.for_argument("images", "at least one image", describe(images))
    if in_channels is not None and images.shape[1] != in_channels:
        raise BadInputError.for_argument(
            "images",
            f"{in_channels} channels (B, {in_channels}, H, W) as the model takes",
            describe(images),
        )
    if not bool(torch.isfinite(images).all()):
        bad = int((~torch.isfinite(images)).sum())
        raise BadInputError.for_argument(
            "images", "finite values", f"{bad} NaN or infinite values in {describe(images)}"
        )
    return images


def parse_target(target: Any, batch_size: int, num_classes: int | None) -> tuple[Tensor, bool]:
    """Normalise ``target`` to a ``(B, K)`` int64 tensor; the flag says whether ``K`` is implied.

    Returns:
        ``(targets, single)``: ``single`` is ``True`` when one class per image was given, so the
        caller returns ``(B, H, W)`` instead of ``(B, K, H, W)``.
    """
    expected = f"an int, a (B,) or a (B, K) integer tensor of class indices with B = {batch_size}"
    if isinstance(target, bool):
        raise BadInputError.for_argument("target", expected, describe(target))
    if isinstance(target, Tensor) and target.dim() == 0 and not target.is_floating_point():
        target = target.item()  # a 0-d integer tensor: one class, like an int
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        tensor = torch.full((batch_size, 1), int(target), dtype=torch.long)
        single = True
    else:
        if not isinstance(target, Tensor):
            try:
                target = torch.as_tensor(target)
            except (TypeError, ValueError, RuntimeError):
                raise BadInputError.for_argument("target", expected, describe(target)) from None
        if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
            raise BadInputError.for_argument("target", expected, describe(target))
        if target.dim() not in (1, 2) or target.shape[0] != batch_size or target.numel() == 0:
            raise BadInputError.for_argument("target", expected, describe(target))
        single = target.dim() == 1
        tensor = target.detach().to("cpu", torch.long).reshape(batch_size, -1)
    check_class_indices(tensor, num_classes)
    return tensor, single


def parse_image_ids(image_ids: Any, batch_size: int) -> list[int]:
    """Normalise ``image_ids`` (keys of each image's random stream) to a list of ints."""
    if image_ids is None:
        return list(range(batch_size))
    ids = torch.as_tensor(image_ids)
    if ids.dtype.is_floating_point or ids.shape != (batch_size,):
        raise BadInputError.for_argument(
            "image_ids", f"{batch_size} integers, one per image", describe(image_ids)
        )
    return [int(i) for i in ids.tolist()]


@contextlib.contextmanager
def attribution_session(
    model: nn.Module, device_type: str, autocast_dtype: torch.dtype | None = None
) -> Iterator[None]:
    """Run a block with gradients on, the model in eval mode, autocast off or as asked.

    Every module's ``training`` flag is restored on exit, also when the block raises. Works
    inside ``no_grad`` and ``inference_mode``.
    """
    autocast = torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with restored_modes(model), torch.inference_mode(False), torch.enable_grad(), autocast:
        model.eval()
        yield


class Attributor(ABC):
    """Base class of attribution methods: ``attribute(images, target) -> maps``.

    Subclasses implement :meth:`_attribute` on validated inputs and inside
    :func:`attribution_session`; this class validates, guards and reduces channels.

    Args:
        model: The classifier; its output is ``(B, num_classes)`` raw logits.
        max_batch_size: The largest number of model inputs per forward/backward pass.
        autocast_dtype: ``None`` (default) computes in the input's dtype with autocast off, even
            under mixed precision; e.g. ``torch.bfloat16`` opts in to autocast.
    """

    runs_model: ClassVar[bool] = True
    """Whether the method runs the model (then images must fit its dtype and size)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        max_batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise BadInputError.for_argument("model", "a torch.nn.Module", describe(model))
        if autocast_dtype is not None and not (
            isinstance(autocast_dtype, torch.dtype) and autocast_dtype.is_floating_point
        ):
            raise BadInputError.for_argument(
                "autocast_dtype", "None or a floating torch.dtype", repr(autocast_dtype)
            )
        self.model = model
        self.max_batch_size = check_int("max_batch_size", max_batch_size, minimum=1)
        self.autocast_dtype = autocast_dtype

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"

    def attribute(
        self,
        images: Tensor,
        target: Target,
        *,
        keep_channels: bool = False,
        image_ids: Sequence[int] | Tensor | None = None,
    ) -> Tensor:
        """Attribute the target logits to the input pixels.

        Args:
            images: ``(B, C, H, W)`` in the model's normalised input space.
            target: An int, a ``(B,)`` tensor, or a ``(B, K)`` tensor of class indices.
            keep_channels: Return ``(B, [K,] C, H, W)`` instead of summing over channels.
            image_ids: Integers that key each image's random stream (default ``0..B-1``); pass
                global indices to make results independent of how a set is split into batches.

        Returns:
            Signed maps ``(B, H, W)`` for one target per image, ``(B, K, H, W)`` for several.
        """
        images = check_images(images, expected_in_channels(self.model))
        if self.runs_model:
            check_images_fit(
                images,
                parameter_dtype(self.model) if self.autocast_dtype is None else None,
                expected_image_size(self.model),
            )
        targets, single = parse_target(target, images.shape[0], model_num_classes(self.model))
        ids = parse_image_ids(image_ids, images.shape[0])
        with attribution_session(self.model, images.device.type, self.autocast_dtype):
            # ordinary copies: inference tensors (made under `inference_mode`, as in Lightning's
            # validation) cannot be saved for backward
            inputs = images.detach().clone() if images.is_inference() else images.detach()
            maps = self._attribute(inputs, targets.to(images.device).clone(), ids).detach()
            if not keep_channels:
                maps = maps.sum(dim=2)
            return maps[:, 0] if single else maps

    @abstractmethod
    def _attribute(self, images: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        """Return ``(B, K, C', H, W)`` maps (``C'`` is ``C``, or 1 for channel-free methods)."""

    def _target_scores(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The ``(n, K)`` raw logits of ``targets``, checking the model's output first."""
        logits = check_logits(logits)
        check_class_indices(targets, logits.shape[1])
        return logits.gather(1, targets)
