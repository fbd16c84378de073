"""Integrated Gradients against a hand-written quadrature of the path integral."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from dave_lightning.baselines import INTEGRATION_METHODS, IntegratedGradients
from dave_lightning.errors import BadInputError
from tests.baselines.helpers import randomise_embeddings
from tests.helpers import tiny_vit


def nodes_and_weights(method: str, steps: int) -> tuple[list[float], list[float]]:
    """The quadrature rule on [0, 1], written from its textbook definition."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return ((nodes + 1) / 2).tolist(), (weights / 2).tolist()
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return [(i + offset) / steps for i in range(steps)], [1 / steps] * steps


def riemann_ig(
    model: nn.Module, image: Tensor, target: int, baseline: Tensor, method: str, steps: int
) -> Tensor:
    """``(x - x') * sum_i w_i grad f(x' + t_i (x - x'))``, one gradient at a time."""
    total = torch.zeros_like(image)
    for node, weight in zip(*nodes_and_weights(method, steps), strict=True):
        point = (baseline + node * (image - baseline))[None].requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(point)[0, target], point)
        total += weight * gradient[0]
    return (image - baseline) * total


@pytest.fixture
def model() -> nn.Module:
    return randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64)).eval()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(
        2, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )


@pytest.mark.parametrize("method", INTEGRATION_METHODS)
def test_equals_the_hand_written_quadrature(model: nn.Module, images: Tensor, method: str) -> None:
    targets = torch.tensor([[1, 3], [4, 0]])
    zero = torch.zeros_like(images[0])
    expected = torch.stack(
        [
            torch.stack([riemann_ig(model, image, t, zero, method, 5) for t in row.tolist()])
            for image, row in zip(images, targets, strict=True)
        ]
    )
    attributor = IntegratedGradients(model, n_steps=5, method=method, max_batch_size=3)
    actual = attributor.attribute(images, targets, keep_channels=True)
    # Captum rounds nodes and weights to float32
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-9)


def test_a_tensor_baseline_is_broadcast_to_each_image(model: nn.Module, images: Tensor) -> None:
    baseline = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)[:, None, None]
    expected = riemann_ig(model, images[1], 2, baseline.expand(3, 32, 32), "gausslegendre", 4)
    attributor = IntegratedGradients(model, n_steps=4, baseline=baseline)
    actual = attributor.attribute(images, 2, keep_channels=True)[1]
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-9)


def test_completeness_with_enough_steps(model: nn.Module, images: Tensor) -> None:
    maps = IntegratedGradients(model, n_steps=24).attribute(images, 3)
    with torch.no_grad():
        change = model(images)[:, 3] - model(torch.zeros_like(images))[:, 3]
    torch.testing.assert_close(maps.sum(dim=(1, 2)), change, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("max_batch_size", "expected"), [(64, [28]), (10, [8, 8, 8, 4]), (3, [3] * 9 + [1])]
)
def test_passes_hold_at_most_max_batch_size_inputs(
    model: nn.Module, images: Tensor, max_batch_size: int, expected: list[int]
) -> None:
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        attributor = IntegratedGradients(model, n_steps=7, max_batch_size=max_batch_size)
        maps = attributor.attribute(images, torch.tensor([[0, 1], [2, 3]]))
    finally:
        handle.remove()
    assert sizes == expected  # 2 images x 2 targets x 7 steps = 28 inputs
    torch.testing.assert_close(
        maps,
        IntegratedGradients(model, n_steps=7).attribute(images, torch.tensor([[0, 1], [2, 3]])),
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_steps": 0}, "`n_steps`: expected an integer >= 1"),
        ({"n_steps": 1, "method": "riemann_left"}, "`n_steps`: expected an integer >= 2"),
        ({"method": "riemann_trapezoid"}, "`method`: expected one of 'gausslegendre'"),
        ({"baseline": float("nan")}, "`baseline`"),
        ({"baseline": torch.zeros(2, 3, 32, 32)}, "`baseline`"),
        ({"baseline": "black"}, "`baseline`"),
    ],
)
def test_bad_options_are_named(model: nn.Module, options: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        IntegratedGradients(model, **options)


def test_a_baseline_of_the_wrong_shape_is_named_at_call_time(
    model: nn.Module, images: Tensor
) -> None:
    attributor = IntegratedGradients(model, n_steps=2, baseline=torch.zeros(3, 16, 16))
    with pytest.raises(BadInputError, match=r"`baseline`: expected a tensor broadcastable"):
        attributor.attribute(images, 0)


def test_captums_trapezoid_weights_are_why_it_is_left_out() -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, _ = approximation_parameters("riemann_trapezoid")
    assert sum(step_sizes(5)) == pytest.approx(4 / 5)  # a correct rule's weights sum to 1
