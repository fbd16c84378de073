"""Choosing DAVE's noise level from the model: the noise-sensitivity curve and its calibration.

The reference guidance for ``noise_alpha`` is to watch how the target's probability reacts to noise
of growing strength and take the largest level the model tolerates. :func:`calibrate_noise_alpha`
automates exactly that, with forward passes only:

1. **Schedule.** Each image is noised with Step III's variance-preserving mix
   ``x̃ = (1 - t) x + sqrt(1 - (1 - t)²) ε`` at every level ``t`` of a grid (default
   ``0.0, 0.1, …, 0.9``: the range and granularity of the paper's reference values). Step II's
   warps are left out: the question is how much *noise* the prediction survives.
2. **Score.** The target's softmax probability above chance, ``p - 1/C``
   (``statistic="probability"``, the guidance's quantity; for ImageNet's 1000 classes the
   correction is negligible, but with few classes a bare ratio ``p_t / p_0`` bottoms out near
   ``(1/C) / p_0``, above one half for two classes, and would accept any level), or its logit
   margin over the strongest other class (``"margin"``). An (image, target) pair counts only
   when the target is the model's top class on the clean image: a prediction it does not make
   cannot degrade.
3. **Retained fraction.** Per pair and level, the score averaged over ``num_draws`` noise draws,
   divided by the clean score and clipped to ``[0, 1]`` (a rise counts as fully kept, a flipped
   margin as nothing kept), so one pair moves the mean by at most ``1 / pairs``. Draw ``d`` of an
   image uses the same ``ε`` at every level (common random numbers: each pair's curve is a smooth
   function of ``t``, not independent noise per level), keyed by ``(seed, image_id, d)`` on a
   stream apart from DAVE's samples: results are deterministic, independent of batching, and
   the global RNG is never touched.
4. **Selection.** The curve is the mean retained fraction over the counted pairs. Its *envelope*
   is the running minimum from ``t = 0`` upwards, so a level counts as tolerated only when every
   smaller level is too: a Monte-Carlo bump, or a score that recovers under heavy noise because
   the model collapses onto the target class, cannot select a level past a drop. The chosen
   level is the largest one whose envelope is at least ``1 - tolerance``; when none is, the
   smallest level of the grid (``0.0`` by default: no noise).

The default :data:`DEFAULT_TOLERANCE` of 0.5 reads "the model tolerates a level while it keeps, on
average, at least half of its clean confidence in the target". For a confident clean prediction
(``p ≈ 1``) that is a mean noisy probability of at least ``1/2 + 1/(2C)``, more than any class
but the top one can have: the target is still, on average, the prediction, so even the noisiest
of DAVE's samples explain the target's evidence, and the schedule spreads the samples uniformly
over ``[0, noise_alpha]``, most of them well inside the tolerated range. A smaller tolerance
gives less smoothing, a larger one more.

Cost: ``B · (1 + L' · num_draws)`` forward passes for ``B`` images and ``L'`` grid levels above
zero, batched into passes of up to ``max_batch_size`` inputs: 37 per image with the defaults,
about a quarter of one DAVE attribution with 50 samples.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    >>> images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> predicted = model(images).argmax(dim=1)
    >>> alpha, curve = calibrate_noise_alpha(model, images, predicted, statistic="margin")
    >>> alpha in curve.levels.tolist(), curve.noise_alpha == alpha, curve.retained[0].item()
    (True, True, 1.0)
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dave_lightning._common import check_choice, check_int
from dave_lightning._noise_sensitivity import measure_retained
from dave_lightning.attributor import (
    Target,
    attribution_session,
    check_images,
    expected_in_channels,
    model_num_classes,
    parse_image_ids,
    parse_target,
)
from dave_lightning.errors import BadInputError

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_NUM_DRAWS",
    "DEFAULT_TOLERANCE",
    "CalibrationSettings",
    "CalibrationWarning",
    "SensitivityCurve",
    "calibrate_noise_alpha",
    "run_calibration",
    "select_noise_alpha",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The grid of candidate levels: the range and step of the paper's reference values."""

DEFAULT_TOLERANCE = 0.5
"""The fraction of the clean score the model may lose on average at the chosen level.

One constant on purpose: the issue-7 benchmark (auto level against a sweep of fixed levels on
GridPG, EnergyPG and deletion AUC) is where it gets validated and, if need be, tuned."""

DEFAULT_NUM_DRAWS = 4
"""Noise draws per (image, level); with common random numbers the curve is smooth already."""

Statistic = Literal["probability", "margin"]
_STATISTICS = ("probability", "margin")


class CalibrationWarning(UserWarning):
    """Calibration measured nothing usable and fell back to the smallest level."""


def _fail(name: str, expected: str, value: Any) -> BadInputError:
    return BadInputError.for_argument(name, expected, repr(value))


def _shape(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class CalibrationSettings:
    """The options of a calibration, validated on construction.

    Args:
        levels: Strictly increasing candidate levels in [0, 1), a sequence or a 1-D tensor (kept
            as a tuple of floats).
        tolerance: The fraction of the clean score that may be lost, in [0, 1].
        statistic: ``"probability"`` or ``"margin"``.
        num_draws: Noise draws per (image, level).

    Raises:
        BadInputError: For a value out of range, naming the option.
    """

    levels: Sequence[float] | Tensor = DEFAULT_LEVELS
    tolerance: float = DEFAULT_TOLERANCE
    statistic: Statistic = "probability"
    num_draws: int = DEFAULT_NUM_DRAWS

    def __post_init__(self) -> None:
        raw = self.levels.tolist() if isinstance(self.levels, Tensor) else self.levels
        levels = tuple(raw) if isinstance(raw, Sequence) and not isinstance(raw, str) else ()
        if (
            not levels
            or not all(_is_number(t) and 0.0 <= t < 1.0 for t in levels)
            or any(low >= high for low, high in itertools.pairwise(levels))
        ):
            raise _fail(
                "levels", "a non-empty, strictly increasing sequence in [0, 1)", self.levels
            )
        object.__setattr__(self, "levels", tuple(float(t) for t in levels))
        if not (_is_number(self.tolerance) and 0.0 <= self.tolerance <= 1.0):
            raise _fail("tolerance", "a number in [0, 1]", self.tolerance)
        object.__setattr__(self, "tolerance", float(self.tolerance))
        check_choice(
            "statistic",
            self.statistic,
            _STATISTICS,
            shown=repr,
            expected="'probability' or 'margin'",
        )
        check_int("num_draws", self.num_draws, minimum=1)


@dataclass(frozen=True)
class SensitivityCurve:
    """How the target's score degrades along the noise schedule, and the level chosen from it.

    Attributes:
        levels: ``(L,)`` float64 grid of levels ``t``.
        retained: ``(L,)`` mean retained fraction of the clean score over the counted pairs (NaN
            when no pair counted).
        envelope: ``(L,)`` running minimum of ``retained``: what the selection reads.
        per_image: ``(B, L)``, or ``(B, K, L)`` for several targets per image: each pair's
            retained fraction, NaN for pairs not counted.
        used: ``(B,)`` or ``(B, K)`` bool, the pairs counted (target = clean top class).
        noise_alpha: The chosen level.
        tolerance: The tolerance it was chosen with.
        statistic: ``"probability"`` or ``"margin"``.
    """

    levels: Tensor
    retained: Tensor
    envelope: Tensor
    per_image: Tensor
    used: Tensor
    noise_alpha: float
    tolerance: float
    statistic: str

    @property
    def threshold(self) -> float:
        """The smallest envelope value a tolerated level may have, ``1 - tolerance``."""
        return 1.0 - self.tolerance

    @property
    def num_used(self) -> int:
        """How many (image, target) pairs the curve averages."""
        return int(self.used.sum())

    def table(self) -> str:
        """The curve as text, one level per line, the chosen level marked with ``*``."""
        rows = [f"{'t':>5} {'retained':>9} {'envelope':>9}"]
        for t, kept, low in zip(self.levels.tolist(), self.retained, self.envelope, strict=True):
            mark = " *" if t == self.noise_alpha else ""
            rows.append(f"{t:5.2f} {float(kept):9.3f} {float(low):9.3f}{mark}")
        return "\n".join(rows)


def calibrate_noise_alpha(
    model: nn.Module,
    images: Tensor,
    target: Target,
    *,
    levels: Sequence[float] | Tensor = DEFAULT_LEVELS,
    tolerance: float = DEFAULT_TOLERANCE,
    statistic: Statistic = "probability",
    num_draws: int = DEFAULT_NUM_DRAWS,
    seed: int = 0,
    max_batch_size: int = 64,
    image_ids: Sequence[int] | Tensor | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[float, SensitivityCurve]:
    """The largest noise level whose mean retained target score stays within ``tolerance``.

    See the module docstring for the measurement and the rule. The model runs in eval mode without
    gradients; every module's mode is restored, parameters and the global RNG are untouched, and
    it can be called under ``no_grad`` or ``inference_mode``.

    Args:
        model: A classifier returning ``(B, num_classes)`` raw logits.
        images: ``(B, C, H, W)`` in the model's normalised input space; a few confidently
            classified images suffice.
        target: An int, a ``(B,)`` or a ``(B, K)`` tensor of class indices (usually the labels
            or the model's predictions).
        levels: Strictly increasing candidate levels in [0, 1).
        tolerance: The fraction of the clean score the model may lose on average, in [0, 1].
        statistic: ``"probability"`` (the target's softmax probability above chance, ``p - 1/C``)
            or ``"margin"`` (the target logit minus the largest other logit).
        num_draws: Noise draws per (image, level).
        seed: Seed of the noise.
        max_batch_size: Largest number of model inputs per forward pass.
        image_ids: Integers that key each image's noise (default ``0..B-1``).
        autocast_dtype: ``None`` computes with autocast off; e.g. ``torch.bfloat16`` opts in.

    Returns:
        ``(noise_alpha, curve)``: the chosen level, one of ``levels``, and the measured curve.

    Raises:
        BadInputError: For bad images, targets, ids or options, or a model whose output is not
            ``(B, num_classes)`` logits.

    Warns:
        CalibrationWarning: When the target is the clean top class for no image; the smallest
            level is returned.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Fixed(nn.Module):  # ignores its input: tolerates any noise
        ...     def forward(self, x):
        ...         return torch.tensor([[2.0, 0.0]]).expand(len(x), 2)
        >>> alpha, curve = calibrate_noise_alpha(Fixed(), torch.zeros(2, 3, 4, 4), 0)
        >>> alpha, curve.envelope.tolist() == [1.0] * 10
        (0.9, True)
    """
    settings = CalibrationSettings(levels, tolerance, statistic, num_draws)
    return run_calibration(
        model,
        images,
        target,
        settings,
        seed=seed,
        max_batch_size=max_batch_size,
        image_ids=image_ids,
        autocast_dtype=autocast_dtype,
        stacklevel=3,
    )


def run_calibration(
    model: nn.Module,
    images: Tensor,
    target: Target,
    settings: CalibrationSettings,
    *,
    seed: int = 0,
    max_batch_size: int = 64,
    image_ids: Sequence[int] | Tensor | None = None,
    autocast_dtype: torch.dtype | None = None,
    stacklevel: int = 2,
) -> tuple[float, SensitivityCurve]:
    """:func:`calibrate_noise_alpha` with its options gathered in ``settings``.

    ``stacklevel`` is that of :class:`CalibrationWarning` as seen from this function: 2 blames
    its caller, 3 the caller's caller.
    """
    if not isinstance(model, nn.Module):
        raise BadInputError.for_argument("model", "a torch.nn.Module", type(model).__name__)
    check_int("seed", seed, shown=repr)
    check_int("max_batch_size", max_batch_size, minimum=1)
    images = check_images(images, expected_in_channels(model))
    targets, single = parse_target(target, images.shape[0], model_num_classes(model))
    ids = parse_image_ids(image_ids, images.shape[0])
    with attribution_session(model, images.device.type, autocast_dtype), torch.no_grad():
        inputs = images.detach().clone() if images.is_inference() else images.detach()
        targets = targets.to(images.device)
        per_pair, used = measure_retained(
            model,
            inputs,
            targets,
            ids,
            settings.levels,
            settings.num_draws,
            settings.statistic,
            seed=seed,
            max_batch_size=max_batch_size,
        )
        # inside the session: the curve's tensors are ordinary ones even under inference_mode
        curve = select_noise_alpha(per_pair, used, settings, stacklevel=stacklevel + 1)
    if single:
        curve = _squeeze_single(curve)
    return curve.noise_alpha, curve


def select_noise_alpha(
    per_image: Tensor,
    used: Tensor,
    settings: CalibrationSettings | None = None,
    *,
    stacklevel: int = 2,
) -> SensitivityCurve:
    """The curve, its envelope and the chosen level from per-image retained fractions.

    The selection half of :func:`calibrate_noise_alpha`, for curves measured in parts: under
    DDP, each process calibrates its share with global ``image_ids``, the ``per_image`` and
    ``used`` of all shares are gathered in image-id order, and this gives every process the level
    one process would have chosen on the whole set.

    Args:
        per_image: ``(B, L)`` or ``(B, K, L)`` retained fractions (``curve.per_image``).
        used: ``(B,)`` or ``(B, K)`` bool, the pairs to count (``curve.used``).
        settings: The levels (``L`` of them) and tolerance; default :class:`CalibrationSettings`.
        stacklevel: As in :func:`run_calibration`.

    Returns:
        The curve of the counted pairs and the chosen level.

    Raises:
        BadInputError: When the shapes do not match each other or the levels.

    Example:
        >>> import torch
        >>> images, classes = 3 * torch.eye(4).reshape(4, 1, 2, 2), torch.arange(4)
        >>> parts = [calibrate_noise_alpha(nn.Flatten(), images[i : i + 2], classes[i : i + 2],
        ...                                image_ids=[i, i + 1])[1] for i in (0, 2)]
        >>> merged = select_noise_alpha(torch.cat([part.per_image for part in parts]),
        ...                             torch.cat([part.used for part in parts]))
        >>> _, whole = calibrate_noise_alpha(nn.Flatten(), images, classes)
        >>> torch.equal(merged.per_image, whole.per_image), merged.noise_alpha == whole.noise_alpha
        (True, True)
    """
    settings = CalibrationSettings() if settings is None else settings
    levels = torch.tensor(settings.levels, dtype=torch.float64)
    if (
        not isinstance(per_image, Tensor)
        or not isinstance(used, Tensor)
        or per_image.dim() < 2
        or per_image.shape[-1] != len(levels)
        or used.dtype != torch.bool
        or used.shape != per_image.shape[:-1]
    ):
        raise BadInputError.for_argument(
            "per_image, used",
            f"a (B, [K,] {len(levels)}) tensor, one value per level, and a bool (B, [K]) mask",
            f"{_shape(per_image)} and {_shape(used)}",
        )
    per_pair, used = per_image.detach().to("cpu", torch.float64), used.detach().cpu()
    chosen = 0
    if bool(used.any()):
        retained = per_pair[used].mean(dim=0)
        envelope = retained.cummin(dim=0).values
        tolerated = (envelope >= 1.0 - settings.tolerance).nonzero().flatten()
        chosen = int(tolerated[-1]) if len(tolerated) else 0
        if not len(tolerated):
            warnings.warn(
                f"noise calibration: the model tolerates none of the levels {settings.levels}"
                f" (it keeps {float(envelope[0]):.2f} of its evidence at the smallest, below"
                f" 1 - tolerance = {1.0 - settings.tolerance:.2f}); returning the smallest level"
                f" {settings.levels[0]}. Include 0 in `levels` or raise `tolerance`.",
                CalibrationWarning,
                stacklevel=stacklevel,
            )
    else:
        retained = envelope = torch.full_like(levels, torch.nan)
        warnings.warn(
            f"noise calibration: the target is the model's top class on none of the {len(used)}"
            f" clean images, so no prediction can degrade; returning the smallest level"
            f" {settings.levels[0]}. Calibrate on images the model classifies correctly (or"
            " pass its predictions as the target).",
            CalibrationWarning,
            stacklevel=stacklevel,
        )
    return SensitivityCurve(
        levels=levels,
        retained=retained,
        envelope=envelope,
        per_image=per_pair,
        used=used,
        noise_alpha=float(settings.levels[chosen]),
        tolerance=settings.tolerance,
        statistic=settings.statistic,
    )


def _squeeze_single(curve: SensitivityCurve) -> SensitivityCurve:
    """The curve of one target per image: ``per_image`` ``(B, L)`` and ``used`` ``(B,)``."""
    return replace(curve, per_image=curve.per_image[:, 0], used=curve.used[:, 0])
