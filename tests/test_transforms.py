"""Steps II/III: the warp against an explicit per-pixel reference, sampling, noise, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from dave_lightning import BadInputError, LocalTransformDistribution
from dave_lightning.transforms import (
    add_noise,
    noise_levels,
    slot_noise,
    slot_seed,
    warp,
)
from tests.helpers import WARP_CASES, reference_warp_weights, warp_params

DOUBLE = torch.float64


@pytest.mark.parametrize("name", list(WARP_CASES))
@pytest.mark.parametrize(("height", "width"), [(8, 8), (6, 10)])
def test_warp_matches_the_explicit_bilinear_reference(name: str, height: int, width: int) -> None:
    params = WARP_CASES[name]
    image = torch.randn(1, 2, height, width, dtype=DOUBLE)
    weights = reference_warp_weights(params, height, width)
    expected = (weights @ image.reshape(2, -1).T).T.reshape(1, 2, height, width)
    torch.testing.assert_close(warp(image, params), expected)


def test_autograd_applies_the_adjoint_warp() -> None:
    """The gradient w.r.t. the un-warped input brings output evidence back to the input frame."""
    params = WARP_CASES["everything"]
    image = torch.randn(1, 1, 6, 10, dtype=DOUBLE, requires_grad=True)
    upstream = torch.randn(1, 1, 6, 10, dtype=DOUBLE)
    (grad,) = torch.autograd.grad((warp(image, params) * upstream).sum(), image)
    expected = reference_warp_weights(params, 6, 10).T @ upstream.reshape(-1)
    torch.testing.assert_close(grad.reshape(-1), expected)


def test_directions_counter_clockwise_rotation_and_positive_shift() -> None:
    image = torch.zeros(1, 1, 9, 9, dtype=DOUBLE)
    image[0, 0, 4, 7] = 1.0  # right of the centre pixel (4, 4)
    rotated = warp(image, warp_params(angle=90.0))[0, 0]
    assert divmod(int(rotated.argmax()), 9) == (1, 4)  # now above the centre
    shifted = warp(image, warp_params(shift=(-3 / 9, 2 / 9)))[0, 0]
    assert divmod(int(shifted.argmax()), 9) == (6, 4)  # 3 px left, 2 px down


def test_sampling_follows_the_configured_ranges() -> None:
    distribution = LocalTransformDistribution(
        flip_prob=0.3, rotation=15.0, translation=0.05, scale=(0.8, 1.2)
    )
    params = distribution.sample([slot_seed(1, i, 0) for i in range(4000)])
    assert abs(float(params.flip.double().mean()) - 0.3) < 0.03
    assert float(params.angle.abs().max()) <= 15.0
    assert float(params.angle.std()) > 15.0 / math.sqrt(3) * 0.95
    assert 0.049 < float(params.shift.abs().max()) <= 0.05
    assert float(params.scale.min()) >= 0.8
    assert float(params.scale.max()) <= 1.2
    assert abs(float(params.scale.mean()) - 1.0) < 0.01


def test_draws_depend_only_on_their_seed_and_leave_the_global_rng_alone() -> None:
    distribution = LocalTransformDistribution()
    seeds = [slot_seed(0, image, sample) for image in range(3) for sample in range(4)]
    global_state = torch.get_rng_state()
    forward = distribution.sample(seeds)
    backward = distribution.sample(seeds[::-1])
    noise = slot_noise(seeds, (2, 4, 4), torch.device("cpu"), torch.float32)
    single = slot_noise(seeds[5:6], (2, 4, 4), torch.device("cpu"), torch.float32)
    assert torch.equal(torch.get_rng_state(), global_state)
    assert torch.equal(forward.angle, backward.angle.flip(0))
    assert torch.equal(noise[5], single[0])
    assert not torch.equal(noise[0], noise[1])


def test_slot_seeds_are_deterministic_distinct_and_in_range() -> None:
    seeds = {slot_seed(s, i, k) for s in range(3) for i in range(20) for k in range(20)}
    assert len(seeds) == 3 * 20 * 20
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert slot_seed(5, 6, 7) == slot_seed(5, 6, 7)


def test_noise_schedule() -> None:
    assert noise_levels(1, 0.7).tolist() == [0.0]
    torch.testing.assert_close(
        noise_levels(5, 0.4), torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4], dtype=DOUBLE)
    )


def test_noise_mix_is_variance_preserving() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 64, 64, generator=generator)
    noise = torch.randn(4, 3, 64, 64, generator=generator)
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9], dtype=DOUBLE)
    mixed = add_noise(images, levels, noise)
    for i, t in enumerate(levels.tolist()):
        expected = (1 - t) * images[i] + math.sqrt(1 - (1 - t) ** 2) * noise[i]
        torch.testing.assert_close(mixed[i], expected)
        assert abs(float(mixed[i].var()) - 1.0) < 0.05
    assert torch.equal(mixed[0], images[0])


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"flip_prob": 1.5}, r"`flip_prob`: expected a number in \[0.0, 1.0\], received 1.5"),
        ({"rotation": -1}, r"`rotation`: expected a number in \[0.0, 180.0\]"),
        ({"translation": 2.0}, r"`translation`"),
        (
            {"scale": (1.1, 0.9)},
            r"`scale`: expected a pair \(low, high\) with 0 < low <= high, received \(1.1, 0.9\)",
        ),
        ({"scale": (0.0, 1.0)}, r"`scale`"),
        ({"scale": "big"}, r"`scale`"),
        ({"scale": 1.0}, r"`scale`: expected a pair \(low, high\).*received 1.0"),
        ({"scale": None}, r"`scale`: .*received None"),
        ({"scale": (True, 1.0)}, r"`scale`"),
        ({"rotation": True}, r"`rotation`: .*received True"),
        ({"rotation": "20"}, r"`rotation`.*received '20'"),
    ],
)
def test_nonsensical_ranges_are_rejected(options: dict[str, object], pattern: str) -> None:
    with pytest.raises(BadInputError, match=pattern):
        LocalTransformDistribution(**options)  # type: ignore[arg-type]
