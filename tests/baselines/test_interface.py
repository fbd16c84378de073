"""Properties every registered method shares: shapes, target independence, batching, autocast."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from dave_lightning.registry import get_attributor
from tests.baselines.helpers import FAST_OPTIONS, randomise_embeddings
from tests.helpers import tiny_vit

CHANNEL_FREE = {"legrad", "random"}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return randomise_embeddings(tiny_vit(seed=0)).eval()


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))


@pytest.mark.parametrize("name", list(FAST_OPTIONS))
def test_shapes_for_one_and_several_targets(name: str, model: nn.Module, images: Tensor) -> None:
    attributor = get_attributor(name, model, **FAST_OPTIONS[name])
    channels = 1 if name in CHANNEL_FREE else 3
    assert attributor.attribute(images, 2).shape == (3, 32, 32)
    assert attributor.attribute(images, torch.tensor([0, 1, 2])).shape == (3, 32, 32)
    several = torch.tensor([[0, 1], [2, 3], [4, 0]])
    assert attributor.attribute(images, several).shape == (3, 2, 32, 32)
    kept = attributor.attribute(images, several, keep_channels=True)
    assert kept.shape == (3, 2, channels, 32, 32)
    torch.testing.assert_close(kept.sum(dim=2), attributor.attribute(images, several))


@pytest.mark.parametrize("name", list(FAST_OPTIONS))
def test_a_targets_map_does_not_depend_on_the_rest_of_the_request(
    name: str, model: nn.Module, images: Tensor
) -> None:
    ids = [40, 41, 42]
    attributor = get_attributor(name, model, max_batch_size=3, **FAST_OPTIONS[name])
    several = attributor.attribute(images, torch.tensor([[0, 1], [2, 3], [4, 0]]), image_ids=ids)
    alone = attributor.attribute(images[1:2], 3, image_ids=ids[1:2])
    torch.testing.assert_close(alone[0], several[1, 1])
    assert torch.equal(
        several,
        attributor.attribute(images, torch.tensor([[0, 1], [2, 3], [4, 0]]), image_ids=ids),
    ), "not reproducible"


@pytest.mark.parametrize("name", list(FAST_OPTIONS))
def test_autocast_opt_in_keeps_the_input_dtype(name: str, model: nn.Module, images: Tensor) -> None:
    options = FAST_OPTIONS[name]
    exact = get_attributor(name, model, **options).attribute(images, 1)
    mixed = get_attributor(name, model, autocast_dtype=torch.bfloat16, **options).attribute(
        images, 1
    )
    assert mixed.dtype == images.dtype
    assert float((mixed - exact).norm() / exact.norm()) < 0.1


@pytest.mark.parametrize("name", list(FAST_OPTIONS))
@pytest.mark.parametrize("mode", [torch.enable_grad, torch.no_grad, torch.inference_mode])
def test_no_warning_in_any_grad_mode(
    name: str, mode: type, model: nn.Module, images: Tensor
) -> None:
    attributor = get_attributor(name, model, **FAST_OPTIONS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Captum's "did not already require gradients"
        with mode():
            attributor.attribute(images, torch.tensor([[1, 2], [3, 4], [0, 0]]))


@pytest.mark.parametrize("name", list(FAST_OPTIONS))
def test_a_fully_frozen_model_gives_the_same_maps(
    name: str, model: nn.Module, images: Tensor
) -> None:
    frozen = randomise_embeddings(tiny_vit(seed=0)).eval().requires_grad_(False)
    maps = get_attributor(name, frozen, **FAST_OPTIONS[name]).attribute(images, 3)
    torch.testing.assert_close(
        maps, get_attributor(name, model, **FAST_OPTIONS[name]).attribute(images, 3)
    )
    assert not any(p.requires_grad for p in frozen.parameters())
