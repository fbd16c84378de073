"""Each Step I backward rule against its closed form, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dave_lightning._frozen_ops import (
    frozen_gate_gelu,
    frozen_gate_quick_gelu,
    frozen_scale_layer_norm,
    gelu_gate,
    value_only_qkv,
)
from tests.helpers import DtypeConversions

DOUBLE = torch.float64


def _jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """Row-by-row Jacobian of a vector function through autograd (shape out × in)."""
    x = x.clone().requires_grad_(True)
    y = fn(x)
    rows = [torch.autograd.grad(y[i], x, retain_graph=True)[0] for i in range(y.numel())]
    return torch.stack(rows)


def test_layer_norm_forward_is_the_library_kernel() -> None:
    x = torch.randn(4, 7, 16)
    weight, bias = torch.randn(16), torch.randn(16)
    expected = F.layer_norm(x, (16,), weight, bias, 1e-6)
    assert torch.equal(frozen_scale_layer_norm(x, (16,), weight, bias, 1e-6), expected)


def test_layer_norm_input_gradient_is_the_frozen_scale_jacobian() -> None:
    d, eps = 6, 1e-5
    x = torch.randn(d, dtype=DOUBLE) * 3 + 1
    gamma, beta = torch.randn(d, dtype=DOUBLE), torch.randn(d, dtype=DOUBLE)
    r = 1.0 / math.sqrt(float(x.var(unbiased=False)) + eps)
    # Closed form: J = diag(γ) · r · (I - 11ᵀ/d); no term from the variation of r.
    expected = torch.diag(gamma) @ (r * (torch.eye(d, dtype=DOUBLE) - 1.0 / d))
    got = _jacobian(lambda v: frozen_scale_layer_norm(v, (d,), gamma, beta, eps), x)
    torch.testing.assert_close(got, expected)
    ordinary = _jacobian(lambda v: F.layer_norm(v, (d,), gamma, beta, eps), x)
    assert not torch.allclose(ordinary, expected)  # the rule really drops a term


def test_layer_norm_parameter_gradients_match_the_ordinary_ones() -> None:
    x = torch.randn(3, 5, 8, dtype=DOUBLE)
    gamma = torch.randn(8, dtype=DOUBLE, requires_grad=True)
    beta = torch.randn(8, dtype=DOUBLE, requires_grad=True)
    g = torch.randn(3, 5, 8, dtype=DOUBLE)
    frozen = torch.autograd.grad(
        frozen_scale_layer_norm(x, (8,), gamma, beta, 1e-6), (gamma, beta), g
    )
    ordinary = torch.autograd.grad(F.layer_norm(x, (8,), gamma, beta, 1e-6), (gamma, beta), g)
    torch.testing.assert_close(frozen, ordinary)


def test_layer_norm_without_affine_and_over_two_dimensions() -> None:
    x = torch.randn(2, 3, 4, dtype=DOUBLE)
    g = torch.randn(2, 3, 4, dtype=DOUBLE)
    leaf = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(frozen_scale_layer_norm(leaf, (3, 4), None, None, 1e-6), leaf, g)
    r = 1 / torch.sqrt(x.var(dim=(1, 2), unbiased=False, keepdim=True) + 1e-6)
    expected = r * (g - g.mean(dim=(1, 2), keepdim=True))
    torch.testing.assert_close(got, expected)


def test_layer_norm_under_cpu_autocast_keeps_the_library_forward() -> None:
    x = torch.randn(4, 16, dtype=torch.bfloat16)
    weight, bias = torch.randn(16), torch.randn(16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.layer_norm(x, (16,), weight, bias, 1e-6)
        got = frozen_scale_layer_norm(x, (16,), weight, bias, 1e-6)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gate_is_gelu_over_x(approximate: str) -> None:
    x = torch.linspace(-6, 6, 101, dtype=DOUBLE)
    x = x[x != 0]
    torch.testing.assert_close(gelu_gate(x, approximate), F.gelu(x, approximate=approximate) / x)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_backward_is_the_gate(approximate: str) -> None:
    x = torch.randn(50, dtype=DOUBLE) * 2
    leaf = x.clone().requires_grad_(True)
    out = frozen_gate_gelu(leaf, approximate)
    assert torch.equal(out.detach(), F.gelu(x, approximate=approximate))
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    if approximate == "tanh":
        cdf = 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(grad, cdf)


def test_quick_gelu_backward_is_its_sigmoid_gate() -> None:
    x = torch.randn(50, dtype=DOUBLE) * 2
    leaf = x.clone().requires_grad_(True)
    out = frozen_gate_quick_gelu(leaf)
    torch.testing.assert_close(out.detach(), x * torch.sigmoid(1.702 * x))
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    torch.testing.assert_close(grad, torch.sigmoid(1.702 * x))


def test_gelu_gate_at_zero_is_one_half() -> None:
    for approximate in ("none", "tanh"):
        leaf = torch.zeros(3, dtype=DOUBLE, requires_grad=True)
        (grad,) = torch.autograd.grad(frozen_gate_gelu(leaf, approximate).sum(), leaf)
        assert grad.tolist() == [0.5, 0.5, 0.5]
    leaf = torch.zeros(2, dtype=DOUBLE, requires_grad=True)
    (grad,) = torch.autograd.grad(frozen_gate_quick_gelu(leaf).sum(), leaf)
    assert grad.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("upstream", [[2.0, 1.0, 3.0], [2.0, math.inf, 3.0]])
def test_gelu_gate_patches_only_the_zeros_among_other_values(upstream: list[float]) -> None:
    leaf = torch.tensor([0.0, 1.5, -2.0], dtype=DOUBLE, requires_grad=True)
    grad_output = torch.tensor(upstream, dtype=DOUBLE)
    (grad,) = torch.autograd.grad(frozen_gate_gelu(leaf), leaf, grad_output)
    expected = grad_output * gelu_gate(leaf.detach())  # Φ(0) = 1/2; inf stays inf
    assert grad.tolist() == pytest.approx(expected.tolist())


def test_value_only_qkv_keeps_the_forward_and_drops_q_and_k_gradients() -> None:
    d = 4
    x = torch.randn(2, 5, d, dtype=DOUBLE)
    weight = torch.randn(3 * d, d, dtype=DOUBLE, requires_grad=True)
    bias = torch.randn(3 * d, dtype=DOUBLE, requires_grad=True)
    g = torch.randn(2, 5, 3 * d, dtype=DOUBLE)
    leaf = x.clone().requires_grad_(True)
    out = value_only_qkv(leaf, weight, bias, 2 * d)
    assert torch.equal(out.detach(), F.linear(x, weight, bias))
    grad_x, grad_w, grad_b = torch.autograd.grad(out, (leaf, weight, bias), g)
    torch.testing.assert_close(grad_x, g[..., 2 * d :] @ weight[2 * d :].detach())
    torch.testing.assert_close(grad_w, g.reshape(-1, 3 * d).T @ x.reshape(-1, d))
    torch.testing.assert_close(grad_b, g.reshape(-1, 3 * d).sum(0))
    # with q and k constant downstream (zero upstream gradient) this is the ordinary gradient
    g[..., : 2 * d] = 0
    leaf = x.clone().requires_grad_(True)
    (ordinary,) = torch.autograd.grad(F.linear(leaf, weight, bias), leaf, g)
    (frozen,) = torch.autograd.grad(value_only_qkv(leaf, weight, bias, 2 * d), leaf, g)
    torch.testing.assert_close(frozen, ordinary)


def _conversions_and_results(fn, leaf_input: torch.Tensor, upstream: torch.Tensor):
    """Dtype conversions of ``fn``'s forward (under CPU bf16 autocast) and backward."""
    leaf = leaf_input.clone().requires_grad_(True)
    with DtypeConversions() as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(leaf)
        (grad,) = torch.autograd.grad(out, leaf, upstream.to(out.dtype))
    return counter.count, out, grad


def test_layer_norm_under_autocast_converts_no_more_than_the_library() -> None:
    """On today's main: statistics from an extra float32 copy, the scale cast in backward."""
    x = torch.randn(4, 7, 16, dtype=torch.bfloat16)
    weight, bias = torch.randn(16), torch.randn(16)
    upstream = torch.randn(4, 7, 16)
    library = _conversions_and_results(
        lambda t: F.layer_norm(t, (16,), weight, bias, 1e-6), x, upstream
    )
    frozen = _conversions_and_results(
        lambda t: frozen_scale_layer_norm(t, (16,), weight, bias, 1e-6), x, upstream
    )
    assert frozen[0] <= library[0]
    assert torch.equal(frozen[1], library[1])
    assert frozen[2].dtype == library[2].dtype == torch.bfloat16


def test_value_only_qkv_under_autocast_converts_no_more_than_the_library_linear() -> None:
    """On today's main the backward cast the saved input and the whole weight again."""
    d = 8
    x = torch.randn(2, 5, d)
    weight, bias = torch.randn(3 * d, d), torch.randn(3 * d)
    upstream = torch.randn(2, 5, 3 * d)
    upstream[..., : 2 * d] = 0  # q and k constant downstream
    library = _conversions_and_results(lambda t: F.linear(t, weight, bias), x, upstream)
    frozen = _conversions_and_results(lambda t: value_only_qkv(t, weight, bias, 2 * d), x, upstream)
    assert frozen[0] <= library[0]
    assert torch.equal(frozen[1], library[1])
    assert frozen[1].dtype == torch.bfloat16
    torch.testing.assert_close(frozen[2], library[2])
