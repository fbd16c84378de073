"""Gradient and Input x Gradient against ``torch.autograd.grad`` directly."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from dave_lightning.baselines import Gradient, InputXGradient
from tests.baselines.helpers import randomise_embeddings
from tests.helpers import tiny_vit


def direct_gradients(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """``(B, K, C, H, W)``: one autograd call per (image, target), nothing shared."""
    rows = []
    for image, image_targets in zip(images, targets, strict=True):
        per_target = []
        for target in image_targets.tolist():
            leaf = image[None].clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(model(leaf)[0, target], leaf)
            per_target.append(gradient[0])
        rows.append(torch.stack(per_target))
    return torch.stack(rows)


@pytest.fixture
def model() -> nn.Module:
    return randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64)).eval()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(
        3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )


TARGETS = torch.tensor([[0, 4], [2, 2], [3, 1]])


@pytest.mark.parametrize("max_batch_size", [1, 2, 64])
def test_gradient_is_the_signed_input_gradient(
    model: nn.Module, images: Tensor, max_batch_size: int
) -> None:
    expected = direct_gradients(model, images, TARGETS)
    attributor = Gradient(model, max_batch_size=max_batch_size)
    actual = attributor.attribute(images, TARGETS, keep_channels=True)
    torch.testing.assert_close(actual, expected)
    assert bool((actual < 0).any()), "signed, not Captum's default absolute value"
    torch.testing.assert_close(attributor.attribute(images, TARGETS), expected.sum(dim=2))


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_input_x_gradient_is_the_input_times_its_gradient(
    model: nn.Module, images: Tensor, max_batch_size: int
) -> None:
    expected = direct_gradients(model, images, TARGETS) * images[:, None]
    attributor = InputXGradient(model, max_batch_size=max_batch_size)
    torch.testing.assert_close(attributor.attribute(images, TARGETS, keep_channels=True), expected)
    single = attributor.attribute(images, TARGETS[:, 1])
    torch.testing.assert_close(single, expected[:, 1].sum(dim=1))


@pytest.mark.parametrize("method", [Gradient, InputXGradient])
def test_no_pass_exceeds_max_batch_size(model: nn.Module, images: Tensor, method: type) -> None:
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        method(model, max_batch_size=4).attribute(images, TARGETS)
    finally:
        handle.remove()
    assert sizes == [4, 2]  # 3 images x 2 targets = 6 rows
