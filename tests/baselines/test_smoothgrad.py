"""SmoothGrad against an explicit loop with the same noise, and against Captum's NoiseTunnel."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel, Saliency
from torch import Tensor, nn

import dave_lightning.baselines.smoothgrad as smoothgrad_module
from dave_lightning.baselines import DEFAULT_NOISE_LEVEL, SmoothGrad
from dave_lightning.errors import BadInputError, ConfigurationError
from dave_lightning.transforms import slot_noise, slot_seed
from tests.baselines.helpers import randomise_embeddings
from tests.helpers import tiny_vit


def explicit_smoothgrad(
    model: nn.Module,
    image: Tensor,
    image_id: int,
    target: int,
    sigma: float,
    samples: int,
    seed: int,
) -> Tensor:
    """``(1/N) sum_k grad f(x + sigma eps_k)``, one sample at a time."""
    total = torch.zeros_like(image)
    for k in range(samples):
        (noise,) = slot_noise(
            [slot_seed(seed, image_id, k)], image.shape, image.device, image.dtype
        )
        point = (image + sigma * noise)[None].requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(point)[0, target], point)
        total += gradient[0]
    return total / samples


@pytest.fixture
def model() -> nn.Module:
    return randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64)).eval()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(
        3, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )


@pytest.mark.parametrize("max_batch_size", [1, 5, 64])
def test_equals_the_explicit_loop_with_absolute_noise(
    model: nn.Module, images: Tensor, max_batch_size: int
) -> None:
    targets, ids = torch.tensor([[1, 2], [0, 0], [4, 3]]), [7, 8, 9]
    expected = torch.stack(
        [
            torch.stack(
                [explicit_smoothgrad(model, image, i, t, 0.3, 3, seed=11) for t in row.tolist()]
            )
            for image, i, row in zip(images, ids, targets, strict=True)
        ]
    )
    attributor = SmoothGrad(model, nt_samples=3, stdevs=0.3, seed=11, max_batch_size=max_batch_size)
    actual = attributor.attribute(images, targets, keep_channels=True, image_ids=ids)
    torch.testing.assert_close(actual, expected)


def test_relative_noise_scales_with_each_image_range(model: nn.Module, images: Tensor) -> None:
    images = images * torch.tensor([1.0, 3.0, 0.2], dtype=torch.float64)[:, None, None, None]
    ranges = [float(image.max() - image.min()) for image in images]
    expected = torch.stack(
        [
            explicit_smoothgrad(model, image, i, 2, 0.2 * spread, 2, seed=0)
            for i, (image, spread) in enumerate(zip(images, ranges, strict=True))
        ]
    )
    actual = SmoothGrad(model, nt_samples=2, noise_level=0.2).attribute(
        images, 2, keep_channels=True
    )
    torch.testing.assert_close(actual, expected)
    default = SmoothGrad(model, nt_samples=2).attribute(images[:1], 2, keep_channels=True)
    torch.testing.assert_close(
        default[0],
        explicit_smoothgrad(model, images[0], 0, 2, DEFAULT_NOISE_LEVEL * ranges[0], 2, 0),
    )


def test_equals_captums_noise_tunnel_given_its_noise(
    model: nn.Module, images: Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples, sigma, target = 4, 0.4, torch.tensor([1, 3, 0])
    seen: list[Tensor] = []

    def forward(inputs: Tensor) -> Tensor:
        seen.append(inputs.detach().clone())
        return model(inputs)

    with torch.random.fork_rng():
        torch.manual_seed(5)
        expected = NoiseTunnel(Saliency(forward)).attribute(
            images, nt_type="smoothgrad", nt_samples=samples, stdevs=sigma, target=target, abs=False
        )
    # Captum's noisy inputs are image-major: row b * N + k is image b, sample k
    noise = (torch.cat(seen) - images.repeat_interleave(samples, dim=0)) / sigma
    noise = noise.reshape(3, samples, *images.shape[1:])
    table = {slot_seed(0, b, k): noise[b, k] for b in range(3) for k in range(samples)}

    def captums_noise(
        seeds: list[int], shape: tuple, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        return torch.stack([table[seed] for seed in seeds]).to(device, dtype)

    monkeypatch.setattr(smoothgrad_module, "slot_noise", captums_noise)
    actual = SmoothGrad(model, nt_samples=samples, stdevs=sigma, max_batch_size=5).attribute(
        images, target, keep_channels=True
    )
    torch.testing.assert_close(actual, expected)


def test_reproducible_and_independent_of_batch_composition(
    model: nn.Module, images: Tensor
) -> None:
    attributor = SmoothGrad(model, nt_samples=3, seed=4, max_batch_size=4)
    full = attributor.attribute(images, 1, image_ids=[10, 11, 12])
    assert torch.equal(full, attributor.attribute(images, 1, image_ids=[10, 11, 12]))
    alone = attributor.attribute(images[2:], 1, image_ids=[12])
    torch.testing.assert_close(alone[0], full[2])
    other_id = attributor.attribute(images[2:], 1, image_ids=[13])
    assert not torch.allclose(other_id[0], full[2])
    other_seed = SmoothGrad(model, nt_samples=3, seed=5).attribute(
        images, 1, image_ids=[10, 11, 12]
    )
    assert not torch.allclose(other_seed, full)


def test_a_targets_map_does_not_depend_on_the_other_targets(
    model: nn.Module, images: Tensor
) -> None:
    attributor = SmoothGrad(model, nt_samples=2)
    pair = attributor.attribute(images, torch.tensor([[1, 2], [1, 3], [1, 4]]))
    torch.testing.assert_close(pair[:, 0], attributor.attribute(images, 1))


def test_passes_pack_samples_of_all_rows(model: nn.Module, images: Tensor) -> None:
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        SmoothGrad(model, nt_samples=5, max_batch_size=4).attribute(
            images, torch.tensor([[0, 1]] * 3)
        )
    finally:
        handle.remove()
    assert sizes == [4] * 7 + [2]  # 3 images x 2 targets x 5 samples = 30 inputs


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"nt_samples": 0}, BadInputError, "`nt_samples`: expected an integer >= 1"),
        ({"stdevs": -1.0}, BadInputError, "`stdevs`: expected a finite number > 0"),
        ({"noise_level": float("inf")}, BadInputError, "`noise_level`"),
        ({"stdevs": True}, BadInputError, "`stdevs`"),
        ({"stdevs": 0.1, "noise_level": 0.1}, ConfigurationError, "give at most one"),
        ({"seed": 1.5}, BadInputError, "`seed`: expected an integer"),
    ],
)
def test_bad_options_are_named(model: nn.Module, options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SmoothGrad(model, **options)
