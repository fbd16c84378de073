"""Counter-based random numbers: every value a pure function of (key, element index) (private).

Each slot of DAVE (an image and a Monte-Carlo sample) has a 64-bit key (see
:func:`dave_lightning.transforms.slot_seed`). Value ``i`` of a slot is derived from the ``i``-th
output of the SplitMix64 generator (Steele, Lea & Flood 2014; the generator behind
``java.util.SplittableRandom``, which passes BigCrush) started at the mixed key,
``mix(s + (i + 1) · γ)`` with ``s = splitmix64(key)`` (mixing the key first keeps the streams of
nearby keys, such as consecutive integers, apart and uncorrelated). Because
output ``i`` needs no state but ``i``, all values of all slots are computed at once with int64
tensor ops on any device: one batched draw instead of one generator reseed per slot, and the same
bits on the CPU and on a GPU.

* Uniforms: the top 53 bits of a word, ``(w >> 11) · 2⁻⁵³`` in [0, 1) (exact in float64).
* Standard normals: Box–Muller on two words per pair of values, ``u₁ = ((w₁ >> 11) + ½) · 2⁻⁵³``
  in (0, 1), ``u₂ = (w₂ >> 11) · 2⁻⁵³``: values ``2p`` and ``2p + 1`` are
  ``sqrt(-2 ln u₁) · (cos 2πu₂, sin 2πu₂)``, computed in float64 and rounded to the requested
  dtype. Exactly N(0, 1) up to the 53-bit grid of the uniforms (the tails are cut beyond 8.6σ,
  probability below 1e-17), independent across values and keys.

Integer arithmetic wraps modulo 2⁶⁴ in int64 tensors; right shifts are made logical by masking.

Example:
    >>> import torch
    >>> keys = torch.tensor([1, 2])
    >>> keyed_normal(keys, (3,), torch.device("cpu"), torch.float32).shape
    torch.Size([2, 3])
    >>> bool((keyed_uniform(keys, 4)[:1] == keyed_uniform(keys[:1], 4)).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["as_keys", "keyed_normal", "keyed_uniform", "splitmix64_words"]

_GAMMA = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_UNIT_53 = 2.0**-53


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(words: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (words >> bits) & ((1 << (64 - bits)) - 1)


def _mix(state: Tensor) -> Tensor:
    """SplitMix64's output function on int64 bit patterns, in place on ``state``."""
    state ^= _shift_right(state, 30)
    state *= _signed(_MIX_1)
    state ^= _shift_right(state, 27)
    state *= _signed(_MIX_2)
    state ^= _shift_right(state, 31)
    return state


def as_keys(seeds: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Integer seeds (any size) as an int64 tensor of their low 64 bits."""
    return torch.tensor([_signed(seed) for seed in seeds], dtype=torch.int64, device=device)


def splitmix64_words(keys: Tensor, count: int) -> Tensor:
    """``(n, count)`` int64 words: word ``i`` of key ``k`` is ``mix(s + (i + 1) · γ)``.

    ``s = splitmix64(k) = mix(k + γ)``: each key starts its own SplitMix64 stream.

    Args:
        keys: ``(n,)`` int64 keys, on the device to compute on.
        count: Words per key.

    Returns:
        The words, as int64 bit patterns.
    """
    starts = _mix(keys.to(torch.int64) + _signed(_GAMMA))
    steps = torch.arange(1, count + 1, dtype=torch.int64, device=keys.device)
    state = steps.mul_(_signed(_GAMMA))[None, :] + starts[:, None]
    return _mix(state)


def keyed_uniform(keys: Tensor, count: int) -> Tensor:
    """``(n, count)`` float64 uniforms in [0, 1) on the 53-bit grid, one row per key."""
    return _shift_right(splitmix64_words(keys, count), 11).double().mul_(_UNIT_53)


def keyed_normal(
    keys: Tensor, shape: Sequence[int], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``(n, *shape)`` independent standard normals, one tensor of ``shape`` per key.

    Args:
        keys: ``(n,)`` int64 keys.
        shape: The shape of one key's values, e.g. ``(C, H, W)``.
        device: Where to compute (the values do not depend on it).
        dtype: The floating dtype of the result.

    Returns:
        The normals.
    """
    size = math.prod(shape)
    pairs = (size + 1) // 2
    words = splitmix64_words(keys.to(device), 2 * pairs).view(-1, pairs, 2)
    radius = _shift_right(words[..., 0], 11).double().add_(0.5).mul_(_UNIT_53)
    radius = radius.log_().mul_(-2.0).sqrt_()
    angle = _shift_right(words[..., 1], 11).double().mul_(2.0 * math.pi * _UNIT_53)
    del words
    values = torch.stack((radius * angle.cos(), radius.mul_(angle.sin_())), dim=-1)
    return values.view(len(keys), 2 * pairs)[:, :size].to(dtype).reshape(len(keys), *shape)
