"""Pixel deletion: how the model's confidence falls as pixels are removed in attribution order.

At step ``k = 0..steps`` the ``round(k / steps · max_fraction · H·W)`` first pixels of the removal
order (all channels) take the replacement value and the model scores the perturbed image. The
curve is the target's score against the nominal removed fraction ``k / steps · max_fraction``;
its AUC (:func:`deletion_auc`) is the trapezoid area divided by ``max_fraction``, so it lies on
the score's scale (a constant curve ``c`` has AUC ``c``).

The AUC is on the scale of the score, so it follows the model's confidence: the same ranking
gets a higher AUC from a more confident model. To compare epochs or models, normalise by the
unperturbed score, ``deletion_auc(curves, fractions, normalize=True)`` (each curve divided by its
first point: the AUC of ``score(t) / score(0)``), or ``PixelDeletion(normalize=True)``, which
divides the mean curve by the mean unperturbed score; the monitor reports the latter.

Reading the result depends on ``order``:

* ``"most_relevant_first"`` (the RISE "deletion" convention, the default here): a good map makes
  the score drop fast, so **lower AUC is better**.
* ``"least_relevant_first"`` (the DAVE paper's script): removing unimportant pixels should keep
  the score, so a higher, flatter curve and **higher AUC are better**.
* ``"random"``: a reference line any map should beat in the chosen direction.

To reproduce the paper's setting, keep only images the model classifies correctly with target
softmax ≥ 0.9 (the caller's job) and call ``pixel_deletion(model, images, maps, target,
steps=128, max_fraction=0.9, order="least_relevant_first", replacement="blur",
score="softmax")``. The defaults (20 steps to 100 %, most relevant first) are a cheaper setting
for monitoring every epoch.

Other choices:

* Ties in the attribution are broken by a seeded random permutation per image, keyed by
  ``(seed, image_id)`` (a local ``torch.Generator`` on the CPU, so the global RNG is untouched
  and results do not depend on the device), never by pixel index, which would favour the top of
  the image. ``image_id`` defaults to the image's position in the batch: pass ``image_ids``
  (e.g. dataset indices) so that tied maps give the same curves however the images are batched.
* ``replacement="blur"`` follows the paper's script: a Gaussian blur of the image (31x31,
  sigma = 7 by default; ``blur_kernel_size``/``blur_sigma``) with mirrored borders, in the model's
  (normalised) input space. ``"zero"`` is 0 in that space (the dataset mean for standard
  normalisation), ``"mean"`` each image's per-channel mean, a tensor anything broadcastable to
  ``(B, C, H, W)``.
* ``score="softmax"`` is the target's softmax probability (the paper), ``"logit"`` its raw logit.
* The model runs in eval mode under ``torch.no_grad()`` on batches of up to ``batch_size``
  perturbed copies (several images and steps per batch); every module's ``training`` flag is
  restored afterwards, also when the model raises.
* Maps containing NaN or ±inf are not evaluated; their curves are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from dave_lightning._common import check_choice, check_int
from dave_lightning.errors import BadInputError
from dave_lightning.metrics.functional._checks import (
    check_attribution_maps,
    describe,
    finite_maps,
    is_integer_tensor,
)
from dave_lightning.metrics.functional._perturbation import (
    evaluation_mode,
    gaussian_blur_images,
    permutation_seed,
    removal_ranks,
    step_counts,
)
from dave_lightning.metrics.functional.deletion_auc import deletion_fractions

__all__ = ["DeletionOptions", "DeletionOrder", "DeletionScore", "Replacement", "pixel_deletion"]

DeletionOrder = Literal["most_relevant_first", "least_relevant_first", "random"]
DeletionScore = Literal["softmax", "logit"]
Replacement = Literal["blur", "zero", "mean"]


@dataclass(frozen=True)
class DeletionOptions:
    """How pixel deletion removes pixels and scores the result, checked once when built.

    Passed whole to :class:`~dave_lightning.metrics.PixelDeletion` (``from_options``) and through
    its update; see :func:`pixel_deletion` for what each option means.

    Attributes:
        steps: Number of removal steps; the curve has ``steps + 1`` points.
        max_fraction: Fraction of pixels removed at the last step, in (0, 1].
        order: ``"most_relevant_first"``, ``"least_relevant_first"`` or ``"random"``.
        replacement: ``"blur"``, ``"zero"``, ``"mean"`` or a floating tensor broadcastable to the
            images (its shape is checked against the images at each call).
        score: ``"softmax"`` (target probability) or ``"logit"``.
        batch_size: Most perturbed copies per forward pass.
        seed: Seed of the permutation that breaks ties (and of the ``"random"`` order).
        blur_kernel_size: Odd Gaussian kernel size for ``replacement="blur"``.
        blur_sigma: Gaussian standard deviation in pixels for ``replacement="blur"``.

    Raises:
        BadInputError: For an invalid option, naming it.

    Example:
        >>> DeletionOptions(steps=4, order="least_relevant_first").steps
        4
        >>> DeletionOptions(order="middle_out")
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `order`: expected one of 'most_relevant_first', \
'least_relevant_first', 'random', received str 'middle_out'.
    """

    steps: int = 20
    max_fraction: float = 1.0
    order: DeletionOrder = "most_relevant_first"
    replacement: Replacement | Tensor = "blur"
    score: DeletionScore = "softmax"
    batch_size: int = 64
    seed: int = 0
    blur_kernel_size: int = 31
    blur_sigma: float = 7.0

    def __post_init__(self) -> None:
        check_int("steps", self.steps, minimum=1)
        fraction = self.max_fraction
        if not _is_number(fraction) or not 0 < fraction <= 1:
            raise BadInputError.for_argument(
                "max_fraction", "a number in (0, 1]", describe(fraction)
            )
        check_choice("order", self.order, get_args(DeletionOrder))
        if not isinstance(self.replacement, Tensor):
            check_choice("replacement", self.replacement, get_args(Replacement))
        elif not self.replacement.is_floating_point():
            raise BadInputError.for_argument(
                "replacement",
                "a floating tensor broadcastable to (B, C, H, W)",
                describe(self.replacement),
            )
        check_choice("score", self.score, get_args(DeletionScore))
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("blur_kernel_size", self.blur_kernel_size, minimum=1, odd=True)
        sigma = self.blur_sigma
        if not _is_number(sigma) or not math.isfinite(sigma) or sigma <= 0:
            raise BadInputError.for_argument("blur_sigma", "a positive number", describe(sigma))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_deletion_inputs(images: Any, attributions: Any, target: Any) -> Tensor:
    """Check the inputs; return ``target`` as a ``(B,)`` int64 tensor on the images' device."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise BadInputError.for_argument(
            "images", "a floating-point tensor of shape (B, C, H, W)", describe(images)
        )
    maps = check_attribution_maps(attributions)
    batch, _, height, width = images.shape
    if maps.shape != (batch, height, width):
        raise BadInputError.for_argument(
            "attributions", f"shape {(batch, height, width)} to match `images`", describe(maps)
        )
    if isinstance(target, int) and not isinstance(target, bool):
        target = torch.full((batch,), target, dtype=torch.long)
    if not is_integer_tensor(target) or target.shape not in ((batch,), ()):
        raise BadInputError.for_argument(
            "target", f"an int or an integer tensor of shape ({batch},)", describe(target)
        )
    target = target.expand(batch).to(device=images.device, dtype=torch.long)
    if batch and int(target.min()) < 0:
        raise BadInputError.for_argument("target", "class indices >= 0", f"{int(target.min())}")
    return target


def _check_image_ids(image_ids: Any, batch: int) -> list[int]:
    if image_ids is None:
        return list(range(batch))
    ids = torch.as_tensor(image_ids)
    if not is_integer_tensor(ids) or ids.shape != (batch,):
        raise BadInputError.for_argument(
            "image_ids", f"{batch} integers, one per image", describe(image_ids)
        )
    return [int(i) for i in ids.tolist()]


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return len(shape) <= len(target) and torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _replacement_images(
    images: Tensor, replacement: str | Tensor, kernel_size: int, sigma: float
) -> Tensor:
    """Values removed pixels take: ``(B or 1, C or 1, H or 1, W or 1)``."""
    if isinstance(replacement, Tensor):
        if not _broadcasts_to(replacement.shape, images.shape):
            raise BadInputError.for_argument(
                "replacement",
                f"a tensor broadcastable to {tuple(images.shape)}",
                describe(replacement),
            )
        shape = (1,) * (4 - replacement.dim()) + tuple(replacement.shape)
        return replacement.to(device=images.device, dtype=images.dtype).reshape(shape)
    if replacement == "blur":
        return gaussian_blur_images(images, kernel_size, sigma)
    if replacement == "mean":
        return images.mean(dim=(2, 3), keepdim=True)
    return images.new_zeros(1, 1, 1, 1)


def _target_scores(logits: Any, target: Tensor, score: str) -> Tensor:
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != target.shape[0]:
        raise BadInputError.for_argument(
            "model",
            f"a model returning logits of shape ({target.shape[0]}, num_classes)",
            f"output {describe(logits)}",
        )
    if int(target.max()) >= logits.shape[1]:
        raise BadInputError.for_argument(
            "target",
            f"class indices < {logits.shape[1]} (the model's classes)",
            f"{int(target.max())}",
        )
    values = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if score == "softmax":
        values = values.softmax(dim=1)
    return values.gather(1, target[:, None])[:, 0]


def _evaluate_curves(
    model: nn.Module,
    images: Tensor,
    replacement: Tensor,
    ranks: Tensor,
    counts: Tensor,
    target: Tensor,
    score: str,
    batch_size: int,
) -> Tensor:
    """Score every (image, step) copy in batches of ``batch_size``; returns ``(B, steps + 1)``."""
    batch, _, height, width = images.shape
    num_steps = counts.shape[0]
    chunks = []
    for start in range(0, batch * num_steps, batch_size):
        pair = torch.arange(start, min(start + batch_size, batch * num_steps), device=images.device)
        image_index, step_index = pair // num_steps, pair % num_steps
        removed = ranks.index_select(0, image_index) < counts.index_select(0, step_index)[:, None]
        fill = replacement
        if replacement.shape[0] != 1:
            fill = replacement.index_select(0, image_index)
        copies = torch.where(
            removed.view(-1, 1, height, width), fill, images.index_select(0, image_index)
        )
        chunks.append(_target_scores(model(copies), target.index_select(0, image_index), score))
    return torch.cat(chunks).view(batch, num_steps)


def _pixel_deletion_update(
    model: nn.Module,
    images: Tensor,
    attributions: Tensor,
    target: Tensor | int,
    options: DeletionOptions,
    image_ids: Tensor | Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Check the inputs (the options are checked already) and compute the curves.

    Returns:
        ``(curves, finite)``: ``(B, steps + 1)`` curves (NaN rows for non-finite maps) and the
        ``(B,)`` bool mask of finite maps.
    """
    targets = _check_deletion_inputs(images, attributions, target)
    maps = attributions.to(images.device)
    finite = finite_maps(maps)
    kept = finite.nonzero()[:, 0]
    batch, _, height, width = images.shape
    ids = _check_image_ids(image_ids, batch)
    steps = options.steps
    if kept.numel() == 0:
        dtype = torch.promote_types(images.dtype, torch.float32)
        return images.new_full((batch, steps + 1), float("nan"), dtype=dtype), finite
    seeds = [permutation_seed(options.seed, ids[int(i)]) for i in kept]
    ranks = removal_ranks(maps.index_select(0, kept), options.order, seeds)
    counts = step_counts(steps, options.max_fraction, height * width, images.device)
    with evaluation_mode(model):
        fill = _replacement_images(
            images, options.replacement, options.blur_kernel_size, options.blur_sigma
        )
        if fill.shape[0] != 1:
            fill = fill.index_select(0, kept)
        kept_curves = _evaluate_curves(
            model,
            images.index_select(0, kept),
            fill,
            ranks,
            counts.to(ranks.dtype),
            targets.index_select(0, kept),
            options.score,
            options.batch_size,
        )
    curves = kept_curves.new_full((batch, steps + 1), float("nan"))
    curves[kept] = kept_curves
    return curves, finite


def pixel_deletion(
    model: nn.Module,
    images: Tensor,
    attributions: Tensor,
    target: Tensor | int,
    steps: int = 20,
    max_fraction: float = 1.0,
    order: DeletionOrder = "most_relevant_first",
    replacement: Replacement | Tensor = "blur",
    score: DeletionScore = "softmax",
    batch_size: int = 64,
    seed: int = 0,
    blur_kernel_size: int = 31,
    blur_sigma: float = 7.0,
    image_ids: Tensor | Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Deletion curves: the target's score as pixels are removed in attribution order.

    See the module documentation for the protocol and how it relates to the paper's setting.

    Args:
        model: Classifier mapping ``(N, C, H, W)`` images to ``(N, num_classes)`` logits. Run in
            eval mode without gradients; its modes are restored afterwards.
        images: Floating ``(B, C, H, W)`` images in the model's input space.
        attributions: Floating ``(B, H, W)`` maps ordering the pixels.
        target: The explained class: an int or a ``(B,)`` integer tensor.
        steps: Number of removal steps; the curve has ``steps + 1`` points.
        max_fraction: Fraction of pixels removed at the last step, in (0, 1].
        order: ``"most_relevant_first"``, ``"least_relevant_first"`` or ``"random"``.
        replacement: ``"blur"``, ``"zero"``, ``"mean"`` or a tensor broadcastable to the images.
        score: ``"softmax"`` (target probability) or ``"logit"``.
        batch_size: Most perturbed copies per forward pass.
        seed: Seed of the permutation that breaks ties (and of the ``"random"`` order).
        blur_kernel_size: Odd Gaussian kernel size for ``replacement="blur"``.
        blur_sigma: Gaussian standard deviation in pixels for ``replacement="blur"``.
        image_ids: ``B`` integers keying each image's permutation with ``seed`` (default: the
            positions ``0..B-1``); pass dataset indices to make curves independent of how the
            images are split into batches or processes.

    Returns:
        ``(fractions, curves)``: the ``(steps + 1,)`` nominal removed fractions from 0 to
        ``max_fraction`` and the ``(B, steps + 1)`` scores (NaN rows for maps with NaN or ±inf).

    Raises:
        BadInputError: For invalid options, mismatched shapes, wrong dtypes, a target out of the
            model's classes, or a model output that is not ``(N, num_classes)`` logits.

    Example:
        A model whose class-0 logit is the sum of the pixels; removing one of four unit pixels
        (replaced by 0) per step lowers it by one:

        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[1.0] * 4, [0.0] * 4]))
        ...     _ = model[1].bias.zero_()
        >>> images, maps = torch.ones(1, 1, 2, 2), torch.rand(1, 2, 2)
        >>> fractions, curves = pixel_deletion(model, images, maps, target=0, steps=4,
        ...                                    replacement="zero", score="logit")
        >>> fractions, curves
        (tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000]), tensor([[4., 3., 2., 1., 0.]]))
        >>> from dave_lightning.metrics.functional import deletion_auc
        >>> deletion_auc(curves, fractions)
        tensor([2.])
    """
    options = DeletionOptions(
        steps,
        max_fraction,
        order,
        replacement,
        score,
        batch_size,
        seed,
        blur_kernel_size,
        blur_sigma,
    )
    curves, _ = _pixel_deletion_update(model, images, attributions, target, options, image_ids)
    return deletion_fractions(steps, max_fraction, curves.dtype, curves.device), curves
