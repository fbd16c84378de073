"""Steps II and III of DAVE: random local transformations and the input-noise schedule.

Step II averages the effective map over small spatial transformations ``τ`` near the identity,
``W_eq(X) = ∫ [τ⁻¹ ∘ W_L ∘ τ](X) dν(τ)``. Each ``τ`` is a horizontal flip (probability
``flip_prob``) followed by an affine map about the image centre: rotation uniform in
``±rotation`` degrees (counter-clockwise for positive angles), translation uniform in
``±translation`` of the width and height, scale uniform in ``scale``, no shear. It is applied as a
differentiable bilinear warp with zero padding (``affine_grid`` + ``grid_sample``), so the
gradient taken with respect to the un-warped input already carries the warp's adjoint: autograd
applies ``τ⁻¹`` and brings maps back to the original pixel grid. That adjoint is deterministic on
every device: the library's on the CPU, an explicit one elsewhere (the library's adds with
atomics on CUDA; see :mod:`dave_lightning._bilinear_warp`).

Step III low-pass filters by input noise with the variance-preserving schedule
``x̃ = (1 - t) τ(x) + sqrt(1 - (1 - t)²) ε``, ``ε ~ N(0, I)``, ``t_k = noise_alpha · k / (N - 1)``.

All randomness is keyed by ``(seed, image_id, sample_index)`` through :func:`slot_seed`, so every
draw is independent of how images and samples are grouped into batches; the global RNG is never
touched. The transformation parameters of all slots are one batched counter-based draw
(:mod:`dave_lightning._keyed_random`), the same on every machine; so is the noise on accelerators
(see :func:`slot_noise` for the CPU).

Example:
    >>> import torch
    >>> distribution = LocalTransformDistribution(rotation=10.0)
    >>> params = distribution.sample([slot_seed(0, 0, k) for k in range(4)])
    >>> warped = warp(torch.rand(4, 3, 8, 8), params)
    >>> warped.shape
    torch.Size([4, 3, 8, 8])
    >>> noise_levels(3, 0.5).tolist()
    [0.0, 0.25, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dave_lightning._bilinear_warp import deterministic_grid_sample
from dave_lightning._keyed_random import as_keys, keyed_normal, keyed_uniform
from dave_lightning.errors import BadInputError

__all__ = [
    "LocalTransformDistribution",
    "TransformParams",
    "add_noise",
    "affine_matrices",
    "noise_levels",
    "slot_noise",
    "slot_seed",
    "warp",
]

_MASK64 = (1 << 64) - 1
_NOISE_STREAM = 0x6E6F697365  # separates the noise stream from the transform stream
_TRANSFORM_STREAM = 0x7761727073  # separates the transform stream from the noise stream
_DETERMINISTIC_LIBRARY_WARP = frozenset({"cpu"})
"""Devices whose ``grid_sample`` backward adds in a fixed order (the CPU: one thread per image)."""


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def slot_seed(seed: int, image_id: int, sample_index: int) -> int:
    """A 63-bit seed for one (image, Monte-Carlo sample) slot, well mixed by SplitMix64.

    Args:
        seed: The caller's seed.
        image_id: An identifier of the image (its index in the probe set, say).
        sample_index: The Monte-Carlo sample ``k``.

    Returns:
        A non-negative integer below ``2**63``.

    Example:
        >>> slot_seed(0, 1, 2) == slot_seed(0, 1, 2) != slot_seed(0, 2, 1)
        True
    """
    mixed = _splitmix64(
        _splitmix64(_splitmix64(seed & _MASK64) ^ (image_id & _MASK64)) ^ sample_index
    )
    return mixed >> 1


@dataclass(frozen=True)
class TransformParams:
    """Parameters of a batch of local transformations, one row per slot.

    Attributes:
        flip: ``(n,)`` bool, horizontal flip applied before the affine map.
        angle: ``(n,)`` rotation in degrees, counter-clockwise.
        shift: ``(n, 2)`` translation as fractions of (width, height).
        scale: ``(n,)`` isotropic scale.
    """

    flip: Tensor
    angle: Tensor
    shift: Tensor
    scale: Tensor

    @classmethod
    def cat(cls, parts: Sequence[TransformParams]) -> TransformParams:
        """Concatenate several parameter batches."""
        return cls(
            flip=torch.cat([p.flip for p in parts]),
            angle=torch.cat([p.angle for p in parts]),
            shift=torch.cat([p.shift for p in parts]),
            scale=torch.cat([p.scale for p in parts]),
        )


def _check_range(name: str, value: float, low: float, high: float) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (is_number and low <= value <= high):
        raise BadInputError.for_argument(name, f"a number in [{low}, {high}]", repr(value))


@dataclass(frozen=True)
class LocalTransformDistribution:
    """The distribution ``ν`` of small spatial transformations near the identity.

    Defaults are the reference values of the DAVE paper.

    Args:
        flip_prob: Probability of a horizontal flip, in [0, 1].
        rotation: Maximum absolute rotation in degrees, in [0, 180].
        translation: Maximum absolute translation as a fraction of width and height, in [0, 1].
        scale: ``(low, high)`` range of the isotropic scale, ``0 < low <= high``.

    Raises:
        BadInputError: When a range is nonsensical.
    """

    flip_prob: float = 0.5
    rotation: float = 20.0
    translation: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        _check_range("flip_prob", self.flip_prob, 0.0, 1.0)
        _check_range("rotation", self.rotation, 0.0, 180.0)
        _check_range("translation", self.translation, 0.0, 1.0)
        scale = tuple(self.scale) if isinstance(self.scale, tuple | list) else ()
        if (
            len(scale) != 2
            or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scale)
            or not (0 < scale[0] <= scale[1] < math.inf)
        ):
            raise BadInputError.for_argument(
                "scale", "a pair (low, high) with 0 < low <= high", repr(self.scale)
            )
        object.__setattr__(self, "scale", (float(scale[0]), float(scale[1])))

    @property
    def is_identity(self) -> bool:
        """Whether every draw is the identity transformation."""
        return (
            self.flip_prob == 0
            and self.rotation == 0
            and self.translation == 0
            and self.scale == (1.0, 1.0)
        )

    def sample(self, seeds: Sequence[int]) -> TransformParams:
        """Draw one transformation per seed (see :func:`slot_seed`), on the CPU.

        One batched counter-based draw: five float64 uniforms per slot, a pure function of its
        seed (:func:`~dave_lightning._keyed_random.keyed_uniform`), so a slot's parameters do
        not depend on the other slots of the batch.

        Args:
            seeds: One seed per slot.

        Returns:
            The parameters, one row per seed.
        """
        uniforms = keyed_uniform(as_keys(seeds) ^ _TRANSFORM_STREAM, 5)
        low, high = self.scale
        return TransformParams(
            flip=uniforms[:, 0] < self.flip_prob,
            angle=(2 * uniforms[:, 1] - 1) * self.rotation,
            shift=(2 * uniforms[:, 2:4] - 1) * self.translation,
            scale=low + (high - low) * uniforms[:, 4],
        )


def affine_matrices(params: TransformParams, height: int, width: int) -> Tensor:
    """Sampling matrices for ``F.affine_grid`` (``align_corners=False``), float64.

    The content of the input at pixel offset ``p`` from the centre appears in the output at
    ``s R(angle) Flip p + shift · (W, H)``; the returned ``(n, 2, 3)`` matrices map normalised
    output coordinates back to normalised input coordinates (the inverse map).

    Args:
        params: The transformation parameters.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        ``(n, 2, 3)`` float64 matrices.
    """
    radians = torch.deg2rad(params.angle)
    cos, sin = torch.cos(radians), torch.sin(radians)
    flip_sign = 1.0 - 2.0 * params.flip.to(torch.float64)
    # Inverse of s·R·Flip in pixel coordinates (x right, y down; counter-clockwise rotation):
    # Flip⁻¹ R(angle)⁻¹ / s with R(angle) = [[cos, sin], [-sin, cos]].
    inv = (
        torch.stack(
            [
                torch.stack([cos * flip_sign, -sin * flip_sign], dim=-1),
                torch.stack([sin, cos], dim=-1),
            ],
            dim=-2,
        )
        / params.scale[:, None, None]
    )
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    linear = inv * half[None, None, :] / half[None, :, None]  # D⁻¹ A⁻¹ D
    shift_normalised = params.shift * 2.0  # translation in normalised units: t / (size / 2)
    offset = -(linear @ shift_normalised[:, :, None])
    return torch.cat([linear, offset], dim=-1)


def warp(images: Tensor, params: TransformParams) -> Tensor:
    """Apply one local transformation per image as a differentiable bilinear warp.

    The values are ``F.grid_sample``'s; the gradient is deterministic on every device (also under
    ``torch.use_deterministic_algorithms(True)``, which the library backward refuses on CUDA).

    Args:
        images: ``(n, C, H, W)``.
        params: ``n`` transformations.

    Returns:
        The warped images, zero outside the original frame.
    """
    theta = affine_matrices(params, images.shape[-2], images.shape[-1])
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if images.device.type in _DETERMINISTIC_LIBRARY_WARP:  # and about 3x faster there
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return deterministic_grid_sample(images, grid)


def noise_levels(num_samples: int, noise_alpha: float) -> Tensor:
    """The deterministic schedule ``t_k = noise_alpha · k / (N - 1)``; ``t_0 = 0``.

    Args:
        num_samples: ``N``.
        noise_alpha: The largest level, in [0, 1).

    Returns:
        ``(N,)`` float64 levels.
    """
    if num_samples == 1:
        return torch.zeros(1, dtype=torch.float64)
    return noise_alpha * torch.arange(num_samples, dtype=torch.float64) / (num_samples - 1)


def keyed_noise_on(device: torch.device) -> bool:
    """Whether :func:`slot_noise` draws on ``device`` by the batched counter-based scheme.

    True off the CPU: there one generator reseed per slot is one kernel launch, while the
    counter-based draw is a few memory-bound integer kernels for the whole chunk. On the CPU the
    per-slot generator stays: torch's int64 element-wise ops made the counter-based draw 5-10x
    slower than torch's Mersenne-Twister normals there (64 x 3 x 224 x 224 values, 2 threads:
    0.7-1.6 s against 0.13 s), which would cost 10-30 % of a ViT-S DAVE run.
    """
    return torch.device(device).type != "cpu"


def slot_noise(
    seeds: Sequence[int], shape: Sequence[int], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Standard normal noise, one tensor of ``shape`` per seed, drawn on ``device``.

    Each slot's values are a function of its seed alone, independent N(0, 1) across elements and
    slots. Off the CPU all slots are one batched counter-based draw
    (:func:`~dave_lightning._keyed_random.keyed_normal`: SplitMix64 words of the seed and the
    element index, Box-Muller in float64), the same numbers on every accelerator and on the CPU
    when called there through ``keyed_normal``; on the CPU one torch generator per slot
    (see :func:`keyed_noise_on`), so the noise differs between CPU and accelerator runs.

    Args:
        seeds: One seed per slot (see :func:`slot_seed`).
        shape: The shape of one slot's noise, e.g. ``(C, H, W)``.
        device: Where to draw.
        dtype: The floating dtype.

    Returns:
        ``(len(seeds), *shape)`` noise.
    """
    if keyed_noise_on(device):
        return keyed_normal(as_keys(seeds) ^ _NOISE_STREAM, shape, device, dtype)
    generator = torch.Generator(device=device)
    noise = torch.empty(len(seeds), *shape, device=device, dtype=dtype)
    for row, seed in enumerate(seeds):
        generator.manual_seed(seed ^ _NOISE_STREAM)
        noise[row].normal_(generator=generator)  # the numbers torch.randn would draw, in place
    return noise


def add_noise(images: Tensor, levels: Tensor, noise: Tensor) -> Tensor:
    """The variance-preserving mix ``(1 - t) x + sqrt(1 - (1 - t)²) ε``, one level per image.

    Args:
        images: ``(n, C, H, W)``.
        levels: ``(n,)`` levels ``t``.
        noise: ``(n, C, H, W)`` standard normal noise ``ε``.

    Returns:
        The noised images.
    """
    keep = (1.0 - levels).to(device=images.device, dtype=images.dtype)
    spread = torch.sqrt(1.0 - keep**2)
    return keep[:, None, None, None] * images + spread[:, None, None, None] * noise
