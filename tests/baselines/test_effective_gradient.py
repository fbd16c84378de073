"""Step-I-only attribution: the effective gradient times the input, and DAVE's degenerate case."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from dave_lightning import DAVE, effective_mode
from dave_lightning.baselines import EffectiveInputXGradient, InputXGradient
from dave_lightning.errors import UnsupportedModelError
from tests.baselines.helpers import random_images, randomise_embeddings
from tests.helpers import tiny_vit


@pytest.fixture
def model() -> nn.Module:
    return randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64)).eval()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(
        3, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )


TARGETS = torch.tensor([[0, 3], [2, 2], [4, 1]])


def step_one_times_input(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    rows = []
    with effective_mode(model):
        for image, row in zip(images, targets, strict=True):
            per_target = []
            for target in row.tolist():
                leaf = image[None].clone().requires_grad_(True)
                (gradient,) = torch.autograd.grad(model(leaf)[0, target], leaf)
                per_target.append(gradient[0] * image)
            rows.append(torch.stack(per_target))
    return torch.stack(rows)


@pytest.mark.parametrize("max_batch_size", [1, 2, 64])
def test_equals_step_one_times_input(model: nn.Module, images: Tensor, max_batch_size: int) -> None:
    expected = step_one_times_input(model, images, TARGETS)
    attributor = EffectiveInputXGradient(model, max_batch_size=max_batch_size)
    torch.testing.assert_close(attributor.attribute(images, TARGETS, keep_channels=True), expected)
    plain = InputXGradient(model).attribute(images, TARGETS, keep_channels=True)
    assert not torch.allclose(plain, expected), (
        "the effective gradient must differ from the plain one"
    )


def test_equals_dave_with_one_sample_no_transformation_no_noise(
    model: nn.Module, images: Tensor
) -> None:
    dave = DAVE(
        model,
        num_samples=1,
        noise_alpha=0.0,
        flip_prob=0.0,
        rotation=0.0,
        translation=0.0,
        scale=(1.0, 1.0),
    )
    expected = dave.attribute(images, TARGETS)
    torch.testing.assert_close(EffectiveInputXGradient(model).attribute(images, TARGETS), expected)


def test_completeness_on_a_bias_free_model() -> None:
    model = tiny_vit(
        seed=0, dtype=torch.float64, class_token=False, global_pool="avg", no_embed_class=True
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.endswith("weight"):
                parameter.zero_()
    x = random_images(2, 3, 32, 32, dtype=torch.float64)
    maps = EffectiveInputXGradient(model.eval()).attribute(x, torch.tensor([[0, 4], [1, 2]]))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), logits[[[0], [1]], [[0, 4], [1, 2]]])


def test_one_forward_pass_serves_every_target(model: nn.Module, images: Tensor) -> None:
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        EffectiveInputXGradient(model, max_batch_size=2).attribute(images, TARGETS)
    finally:
        handle.remove()
    assert sizes == [2, 1]


def test_unsupported_models_are_refused_at_construction() -> None:
    with pytest.raises(UnsupportedModelError, match="BatchNorm2d"):
        EffectiveInputXGradient(nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(2)))
