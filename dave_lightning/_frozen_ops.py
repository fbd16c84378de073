"""Autograd functions whose forward is the library kernel and whose backward is DAVE's Step I rule.

Each non-linear operator of a ViT is written as an input-dependent linear operator applied to its
input, ``F(x) = L(x) x``. The functions here keep ``L(x)`` constant in the backward pass:

* LayerNorm ``γ ⊙ (x - mean(x)) · r + β`` with ``r = 1 / sqrt(var(x) + eps)`` frozen, so the input
  gradient is ``r · (gγ - mean(gγ))`` (mean-centring and ``γ``, ``β`` keep their gradient).
* GELU ``x · Φ(x)`` with the gate ``Φ(x) = GELU(x) / x`` frozen: the input gradient is ``g · Φ(x)``.
  The tanh approximation and QuickGELU ``x · sigmoid(1.702 x)`` use their own gates.

Both backward rules drop terms of the ordinary derivative, so they are cheaper than it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "frozen_gate_gelu",
    "frozen_gate_quick_gelu",
    "frozen_scale_layer_norm",
    "gelu_gate",
    "value_only_qkv",
]

_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_QUICK_GELU_SLOPE = 1.702


def gelu_gate(x: Tensor, approximate: str = "none") -> Tensor:
    """The gate ``Φ(x)`` with ``GELU(x) = x · Φ(x)``, for exact or tanh-approximated GELU.

    Args:
        x: Pre-activation values.
        approximate: ``"none"`` for the exact GELU, ``"tanh"`` for the tanh approximation.

    Returns:
        The gate, same shape and dtype as ``x``.

    Example:
        >>> import torch
        >>> gelu_gate(torch.tensor([0.0, 100.0]))
        tensor([0.5000, 1.0000])
    """
    if approximate == "tanh":
        return 0.5 * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x.pow(3))))
    return 0.5 * (1.0 + torch.erf(x * _SQRT_HALF))


def _gate_times(grad_output: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``grad_output · gate(x)`` read off the forward output: ``gate(x) = y / x``, 1/2 at 0.

    Two passes over the activations (a multiply and a divide) instead of re-evaluating the gate.
    At ``x = 0`` every supported gate (Φ, its tanh form, sigmoid) is exactly 1/2. A zero ``x``
    makes ``0 / 0 = NaN``, so a finite sum (one reduction, no full-size temporary) proves there
    is none; only otherwise are the zeros looked for and patched. Under ``torch.compile`` the
    zeros are always patched (one fused kernel; the data-dependent test would break the graph).
    """
    if torch.compiler.is_compiling():
        return torch.where(x == 0, 0.5 * grad_output, grad_output * y / x)
    grad = torch.mul(grad_output, y).div_(x)
    if not bool(torch.isfinite(grad.sum())):
        grad = torch.where(x == 0, 0.5 * grad_output, grad)
    return grad


class _FrozenGate(torch.autograd.Function):
    """``y = act(x) = x · gate(x)`` by the library kernel; backward ``grad_output · gate(x)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, activation: str) -> Tensor:
        if activation == "quick":
            y = x * torch.sigmoid(_QUICK_GELU_SLOPE * x)
        else:
            y = F.gelu(x, approximate="tanh" if activation == "tanh" else "none")
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        x, y = ctx.saved_tensors
        return _gate_times(grad_output, x, y), None


@functools.cache
def _layer_norm_dtype(
    device_type: str, autocast_dtype: torch.dtype, dtype: torch.dtype
) -> torch.dtype:
    """The dtype ``F.layer_norm`` computes in for ``dtype`` inputs under this autocast (probed).

    The autocast policies are not public, so one 1-element layer norm per combination tells.
    """
    probe = torch.zeros(1, device=device_type, dtype=dtype)
    with torch.autocast(device_type, dtype=autocast_dtype):
        return F.layer_norm(probe, (1,)).dtype


def _layer_norm_with_stats(
    x: Tensor,
    normalized_shape: tuple[int, ...],
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Library layer norm plus the mean and inverse standard deviation it used.

    Under autocast the inputs are cast to the dtype ``F.layer_norm`` would compute in (e.g.
    float32 on CUDA), as autocast itself does, so the values are the library's, in one pass.
    """
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        autocast_dtype = torch.get_autocast_dtype(device_type)
        # compiled, the probe is traced (its dtype is known at trace time, its op dropped):
        # dynamo warns about tracing through a cache, so it traces the uncached function
        probe = (
            _layer_norm_dtype.__wrapped__ if torch.compiler.is_compiling() else _layer_norm_dtype
        )
        dtype = probe(device_type, autocast_dtype, x.dtype)
        if dtype != x.dtype:  # autocast casts every floating argument (else none)
            x = x.to(dtype)
            weight = None if weight is None else weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
    out, mean, rstd = torch.native_layer_norm(x, normalized_shape, weight, bias, eps)
    return out, mean, rstd


class _FrozenScaleLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        normalized_shape: tuple[int, ...],
        eps: float,
    ) -> Tensor:
        out, mean, rstd = _layer_norm_with_stats(x, normalized_shape, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.norm_dims = tuple(range(-len(normalized_shape), 0))
        return out

    @staticmethod
    def backward(
        ctx: Any, grad_output: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        x, weight, mean, rstd = ctx.saved_tensors
        dims = ctx.norm_dims
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_x = grad_weight = grad_bias = None
        if needs_x:
            # in grad_output's dtype, as the library backward: `out=` and in-place ops cast as
            # they compute (no separate conversion of the weight, the statistics or the result)
            scaled = torch.empty_like(grad_output)
            if weight is None:
                scaled.copy_(grad_output)
            else:
                torch.mul(grad_output, weight, out=scaled)
            grad_x = scaled.sub_(scaled.mean(dim=dims, keepdim=True)).mul_(rstd)
        batch_dims = tuple(range(grad_output.dim() - len(dims)))
        if needs_weight:
            normalized = (x - mean.to(x.dtype)) * rstd
            grad_weight = (grad_output * normalized).sum(dim=batch_dims)
        if needs_bias:
            grad_bias = grad_output.sum(dim=batch_dims)
        return grad_x, grad_weight, grad_bias, None, None


def frozen_gate_gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """``F.gelu`` in the forward pass; the gate ``Φ(x)`` is held constant in the backward pass.

    Args:
        x: Pre-activation values.
        approximate: ``"none"`` (exact) or ``"tanh"``, as for ``torch.nn.functional.gelu``.

    Returns:
        ``F.gelu(x, approximate)``; its gradient is ``grad_output · Φ(x)``.

    Example:
        >>> import torch
        >>> x = torch.tensor([-1.0, 2.0], requires_grad=True)
        >>> frozen_gate_gelu(x).sum().backward()
        >>> torch.allclose(x.grad, gelu_gate(x.detach()))
        True
    """
    out: Tensor = _FrozenGate.apply(x, "tanh" if approximate == "tanh" else "exact")
    return out


def frozen_gate_quick_gelu(x: Tensor) -> Tensor:
    """QuickGELU ``x · sigmoid(1.702 x)`` with its sigmoid gate held constant in backward.

    Args:
        x: Pre-activation values.

    Returns:
        ``x · sigmoid(1.702 x)``; its gradient is ``grad_output · sigmoid(1.702 x)``.
    """
    out: Tensor = _FrozenGate.apply(x, "quick")
    return out


def frozen_scale_layer_norm(
    x: Tensor,
    normalized_shape: tuple[int, ...],
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
) -> Tensor:
    """``F.layer_norm`` in the forward pass; ``1 / sqrt(var + eps)`` is constant in backward.

    Args:
        x: Input whose trailing dimensions match ``normalized_shape``.
        normalized_shape: The normalised trailing shape.
        weight: The scale ``γ`` or ``None``.
        bias: The shift ``β`` or ``None``.
        eps: The variance floor.

    Returns:
        The library layer norm of ``x``; the input gradient is ``r · (gγ - mean(gγ))``.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
        >>> y = frozen_scale_layer_norm(x, (5,), None, None, 1e-6)
        >>> (grad,) = torch.autograd.grad(y[:, 0].sum(), x)
        >>> rstd = 1 / (x.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
        >>> expected = (torch.eye(5, dtype=torch.float64)[0] - 0.2) * rstd
        >>> torch.allclose(grad, expected)
        True
    """
    out: Tensor = _FrozenScaleLayerNorm.apply(x, weight, bias, tuple(normalized_shape), eps)
    return out


def _autocast_cast(tensor: Tensor) -> Tensor:
    """``tensor`` as autocast casts a lower-precision op's argument (unchanged without autocast)."""
    if not torch.is_autocast_enabled(tensor.device.type):
        return tensor
    if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return tensor  # autocast leaves float64 alone
    return tensor.to(torch.get_autocast_dtype(tensor.device.type))


class _ValueOnlyQKV(torch.autograd.Function):
    """A qkv projection whose q and k outputs are constants downstream (effective attention).

    Forward is ``F.linear``; the input gradient comes from the value rows only, which skips two
    thirds of the backward matmul. Parameter gradients keep the ordinary formula. Under autocast
    the operands are cast here, as autocast would cast them, so that the backward reuses the
    lower-precision weight instead of casting again.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, value_start: int
    ) -> Tensor:
        x_cast, weight_cast = _autocast_cast(x), _autocast_cast(weight)
        bias_cast = None if bias is None else _autocast_cast(bias)
        # x is only needed for the weight's gradient
        ctx.save_for_backward(x_cast if ctx.needs_input_grad[1] else None, weight_cast)
        ctx.value_start = value_start
        ctx.has_bias = bias is not None
        return F.linear(x_cast, weight_cast, bias_cast)

    @staticmethod
    def backward(
        ctx: Any, grad_output: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        start = ctx.value_start
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output[..., start:] @ weight[start:].to(grad_output.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.flatten(0, -2).T @ x.to(grad_output.dtype).flatten(0, -2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.flatten(0, -2).sum(0)
        return grad_x, grad_weight, grad_bias, None


def value_only_qkv(x: Tensor, weight: Tensor, bias: Tensor | None, value_start: int) -> Tensor:
    """``F.linear(x, weight, bias)`` whose input gradient flows through rows ``value_start:`` only.

    Correct exactly when the outputs before ``value_start`` (q and k) are constants downstream,
    as they are in effective mode.

    Args:
        x: ``(..., in_features)``.
        weight: ``(3 · attn_dim, in_features)``.
        bias: ``(3 · attn_dim,)`` or ``None``.
        value_start: First output row of the value projection, ``2 · attn_dim``.

    Returns:
        The projection, unchanged in value.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> weight = torch.randn(6, 4)
        >>> out = value_only_qkv(x, weight, None, 4)
        >>> (grad,) = torch.autograd.grad(out[:, 4:].sum(), x)
        >>> torch.allclose(grad, weight[4:].sum(0).expand(2, 4))
        True
    """
    out: Tensor = _ValueOnlyQKV.apply(x, weight, bias, value_start)
    return out
