"""The counter-based keyed draw against a per-slot pure-Python reference, and its statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dave_lightning import transforms
from dave_lightning._keyed_random import as_keys, keyed_normal, keyed_uniform, splitmix64_words
from dave_lightning.transforms import _splitmix64, slot_noise, slot_seed

CPU = torch.device("cpu")
GAMMA = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1


def _reference_words(key: int, count: int) -> list[int]:
    """SplitMix64 started at ``splitmix64(key)``, one slot at a time, in Python integers."""
    start = _splitmix64(key & MASK)
    return [_splitmix64((start + i * GAMMA) & MASK) for i in range(count)]


def _reference_normals(key: int, size: int) -> list[float]:
    """Box-Muller on consecutive word pairs, per element with ``math``."""
    words = _reference_words(key, 2 * ((size + 1) // 2))
    out: list[float] = []
    for first, second in zip(words[::2], words[1::2], strict=True):
        radius = math.sqrt(-2.0 * math.log(((first >> 11) + 0.5) * 2.0**-53))
        angle = 2.0 * math.pi * (second >> 11) * 2.0**-53
        out += [radius * math.cos(angle), radius * math.sin(angle)]
    return out[:size]


def _as_unsigned(words: torch.Tensor) -> list[int]:
    return [w & MASK for w in words.tolist()]


def test_words_are_splitmix64_of_the_key_for_any_key() -> None:
    seeds = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, slot_seed(3, 4, 5)]
    words = splitmix64_words(as_keys(seeds), 7)
    for row, seed in enumerate(seeds):
        assert _as_unsigned(words[row]) == _reference_words(seed, 7)


@pytest.mark.parametrize("shape", [(3, 2, 5), (1, 3, 3)])  # an even and an odd slot size
def test_batched_normals_equal_the_per_slot_reference(shape: tuple[int, ...]) -> None:
    seeds = [slot_seed(0, image, sample) for image in range(2) for sample in range(3)]
    batched = keyed_normal(as_keys(seeds), shape, CPU, torch.float64)
    for row, seed in enumerate(seeds):
        expected = torch.tensor(_reference_normals(seed, math.prod(shape)), dtype=torch.float64)
        torch.testing.assert_close(batched[row].flatten(), expected, rtol=1e-13, atol=1e-13)


def test_a_slot_gets_the_same_noise_whatever_the_batch_around_it() -> None:
    seeds = [slot_seed(7, image, sample) for image in range(4) for sample in range(5)]
    keys = as_keys(seeds)
    whole = keyed_normal(keys, (3, 4, 4), CPU, torch.float32)
    order = torch.randperm(len(seeds), generator=torch.Generator().manual_seed(0))
    shuffled = keyed_normal(keys[order], (3, 4, 4), CPU, torch.float32)
    assert torch.equal(shuffled, whole[order])
    assert torch.equal(keyed_normal(keys[6:7], (3, 4, 4), CPU, torch.float32)[0], whole[6])
    assert torch.equal(keyed_uniform(keys[order], 5), keyed_uniform(keys, 5)[order])


@pytest.fixture(scope="module")
def normals() -> np.ndarray:
    """(slots, values) of consecutive slots' noise: 200 slots of 3 x 32 x 32."""
    seeds = [slot_seed(11, image, sample) for image in range(4) for sample in range(50)]
    return keyed_normal(as_keys(seeds), (3, 32, 32), CPU, torch.float64).flatten(1).numpy()


def test_normals_have_mean_zero_and_unit_variance(normals: np.ndarray) -> None:
    values = normals.ravel()  # 614,400 values: standard error of the mean 0.0013
    assert abs(values.mean()) < 0.006
    assert abs(values.var() - 1.0) < 0.01
    assert abs(stats.kurtosis(values)) < 0.03  # excess kurtosis of a normal: 0


def test_normals_pass_a_kolmogorov_smirnov_test(normals: np.ndarray) -> None:
    assert stats.kstest(normals.ravel(), "norm").pvalue > 0.01
    assert stats.kstest(normals[:, ::2].ravel(), "norm").pvalue > 0.01  # cosine halves
    assert stats.kstest(normals[:, 1::2].ravel(), "norm").pvalue > 0.01  # sine halves


def test_neighbours_and_consecutive_slots_are_uncorrelated(normals: np.ndarray) -> None:
    bound = 4 / math.sqrt(normals.size)  # four standard errors of a correlation
    pairs = {
        "neighbouring elements": (normals[:, :-1], normals[:, 1:]),
        "Box-Muller partners": (normals[:, ::2], normals[:, 1::2]),
        "consecutive samples": (normals[:-1], normals[1:]),
        "same sample, other image": (normals[:50], normals[50:100]),
    }
    for name, (first, second) in pairs.items():
        correlation = np.corrcoef(first.ravel(), second.ravel())[0, 1]
        assert abs(correlation) < bound, name
    squares = np.corrcoef((normals[:, ::2] ** 2).ravel(), (normals[:, 1::2] ** 2).ravel())[0, 1]
    assert abs(squares) < bound  # partners share a radius but stay independent


def test_uniforms_are_uniform_on_the_unit_interval() -> None:
    uniforms = keyed_uniform(as_keys(range(2000)), 5)
    assert float(uniforms.min()) >= 0.0
    assert float(uniforms.max()) < 1.0
    for column in range(5):
        assert stats.kstest(uniforms[:, column].numpy(), "uniform").pvalue > 0.01
    correlation = np.corrcoef(uniforms.T.numpy())
    assert np.abs(correlation - np.eye(5)).max() < 4 / math.sqrt(2000)


def test_off_the_cpu_slot_noise_is_the_batched_keyed_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = [slot_seed(1, image, 2) for image in range(3)]
    monkeypatch.setattr(transforms, "keyed_noise_on", lambda device: True)
    keyed = slot_noise(seeds, (2, 3, 3), CPU, torch.float32)
    keys = as_keys(seeds) ^ transforms._NOISE_STREAM
    expected = keyed_normal(keys, (2, 3, 3), CPU, torch.float32)
    assert torch.equal(keyed, expected)
    assert transforms.keyed_noise_on(torch.device("cuda")) is True


def test_the_cpu_keeps_the_per_slot_generator() -> None:
    seeds = [slot_seed(1, image, 2) for image in range(3)]
    generator = torch.Generator().manual_seed(seeds[1] ^ transforms._NOISE_STREAM)
    expected = torch.randn(2, 3, 3, generator=generator)
    assert torch.equal(slot_noise(seeds, (2, 3, 3), CPU, torch.float32)[1], expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_the_cpu_numbers() -> None:
    keys = as_keys([slot_seed(0, image, 3) for image in range(4)])
    cuda = torch.device("cuda")
    assert torch.equal(splitmix64_words(keys.to(cuda), 9).cpu(), splitmix64_words(keys, 9))
    on_gpu = keyed_normal(keys, (3, 8, 8), cuda, torch.float32).cpu()
    torch.testing.assert_close(on_gpu, keyed_normal(keys, (3, 8, 8), CPU, torch.float32))
