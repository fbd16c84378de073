"""A cheaper backward for attention whose queries and keys are constants (effective attention).

In effective mode q and k reach ``F.scaled_dot_product_attention`` detached, so the only gradient
wanted is the one of ``v``: ``∂L/∂v = Pᵀ · ∂L/∂out`` with ``P = softmax(q kᵀ · scale + mask)``.
PyTorch's fused backward kernels (CPU, cuDNN, flash, memory-efficient) compute the gradients of q
and k as well and throw them away; recomputing ``P`` and doing one matmul costs about a quarter
less per attention on the CPU (measured on ViT-Ti/16 at 224, 64 images, 2 CPU threads). The
forward is the library kernel, unchanged, on every device and under autocast.

Under autocast the backward runs under the forward's autocast state: ``P`` is recomputed as
timm's unfused attention computes it there (logits by a lower-precision matmul, the softmax as
autocast runs it) and ``Pᵀ · ∂L/∂out`` is a lower-precision matmul, like the library backward's.

:class:`ValueOnlyAttentionMode` reroutes such calls while it is active. The rerouting is exact
for any caller (when q and k carry no gradient, the gradient of ``v`` is all there is); it
applies on every device and under autocast, without dropout and without grouped-query
attention; everything else goes to the library untouched. Under bf16 autocast on the CPU it
matters most: the library's CPU kernel for bf16 attention is slow, and a whole Step I pass took
0.72x (ViT-Ti/16) and 0.75x (ViT-S/16) the plain pass's time with the value-only backward
against 0.96x with the library's (``benchmarks/bench_step1.py --batch 32`` against
``--library-attention``, 2 CPU threads with AVX512-BF16, torch 2.14).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["ValueOnlyAttentionMode", "value_only_attention"]

_MAX_SCORES = 1 << 24  # attention-matrix elements recomputed at once in backward (64 MB float32)


def _attention_probabilities(
    q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool, scale: float | None
) -> Tensor:
    """``softmax(q kᵀ · scale + mask)`` as the library kernel defines it."""
    factor = q.shape[-1] ** -0.5 if scale is None else scale
    # scaled into a contiguous tensor: the matmul then needs no copy of q (a head of a stacked
    # qkv projection is a strided view)
    scaled_q = torch.mul(q, factor, out=torch.empty(q.shape, dtype=q.dtype, device=q.device))
    logits = scaled_q @ k.transpose(-2, -1)
    if is_causal:
        length, source = logits.shape[-2:]
        allowed = torch.ones(length, source, dtype=torch.bool, device=q.device).tril()
        logits = logits.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask
    return logits.softmax(dim=-1)


class _ValueOnlyAttention(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        scale: float | None,
    ) -> Tensor:
        ctx.save_for_backward(q, k, mask)
        ctx.is_causal, ctx.scale = is_causal, scale
        device_type = q.device.type
        ctx.autocast = None
        if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
            ctx.autocast = (device_type, torch.get_autocast_dtype(device_type))
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale
        )

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[None, None, Tensor, None, None, None]:
        if ctx.autocast is None:
            return _ValueOnlyAttention._value_gradient(ctx, grad_output)
        # the forward's autocast state, also when backward runs outside it (as custom_bwd does)
        device_type, dtype = ctx.autocast
        with torch.autocast(device_type, dtype=dtype):
            return _ValueOnlyAttention._value_gradient(ctx, grad_output)

    @staticmethod
    def _value_gradient(
        ctx: Any, grad_output: Tensor
    ) -> tuple[None, None, Tensor, None, None, None]:
        q, k, mask = ctx.saved_tensors
        if torch.compiler.is_compiling():
            # in one piece: a loop over batch slices would fix the batch size in the graph
            probabilities = _attention_probabilities(q, k, mask, ctx.is_causal, ctx.scale)
            return None, None, probabilities.transpose(-2, -1) @ grad_output, None, None, None
        # the attention matrix is recomputed in slices of the batch to bound its memory
        batch = q.shape[0]
        per_image = max(1, q[0].numel() // q.shape[-1] * k.shape[-2])
        step = max(1, _MAX_SCORES // per_image)
        parts = []
        for start in range(0, batch, step):
            rows = slice(start, start + step)
            part_mask = None
            if mask is not None:
                part_mask = mask[rows] if mask.dim() == q.dim() and mask.shape[0] == batch else mask
            probabilities = _attention_probabilities(
                q[rows], k[rows], part_mask, ctx.is_causal, ctx.scale
            )
            parts.append(probabilities.transpose(-2, -1) @ grad_output[rows])
        value_gradient = parts[0] if len(parts) == 1 else torch.cat(parts)
        return None, None, value_gradient, None, None, None


def value_only_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """``F.scaled_dot_product_attention`` whose backward gives the gradient of ``v`` only.

    Correct exactly when ``q`` and ``k`` are constants (detached), as in effective mode.

    Args:
        q: ``(B, ..., L, E)`` queries.
        k: ``(B, ..., S, E)`` keys.
        v: ``(B, ..., S, Ev)`` values.
        attn_mask: Optional boolean (True = take part) or additive mask, broadcastable.
        is_causal: Causal masking, as in the library.
        scale: Logit scale; ``None`` for ``1 / sqrt(E)``.

    Returns:
        The library's attention output, unchanged in value.

    Example:
        >>> import torch
        >>> q, k = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 5, 4)
        >>> v = torch.randn(2, 1, 5, 4, requires_grad=True)
        >>> out = value_only_attention(q, k, v)
        >>> (mine,) = torch.autograd.grad(out.sum(), v)
        >>> v2 = v.detach().requires_grad_(True)
        >>> (library,) = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v2).sum(), v2)
        >>> torch.allclose(mine, library, atol=1e-6)
        True
    """
    out: Tensor = _ValueOnlyAttention.apply(q, k, v, attn_mask, is_causal, scale)
    return out


def _reroutable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if len(args) < 3 or not all(isinstance(t, Tensor) for t in args[:3]):
        return False
    q, k, v = args[:3]
    known = {"attn_mask", "dropout_p", "is_causal", "scale"}
    extra = set(kwargs) - known
    if len(args) > 3 or (extra - {"enable_gqa"}) or kwargs.get("enable_gqa", False):
        return False
    mask = kwargs.get("attn_mask")
    return (
        torch.is_grad_enabled()
        and v.requires_grad
        and not q.requires_grad
        and not k.requires_grad
        and not (isinstance(mask, Tensor) and mask.requires_grad)
        and kwargs.get("dropout_p", 0.0) == 0.0
        and q.dim() == k.dim() == v.dim()
        and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]
    )


class ValueOnlyAttentionMode(TorchFunctionMode):
    """While active, scaled-dot-product attention with constant q and k gets the cheap backward.

    Example:
        >>> import torch
        >>> q, k = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
        >>> v = torch.randn(1, 1, 3, 4, requires_grad=True)
        >>> with ValueOnlyAttentionMode():
        ...     out = F.scaled_dot_product_attention(q, k, v)
        >>> out.grad_fn.name()
        '_ValueOnlyAttentionBackward'
    """

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and _reroutable(args, kwargs):
            q, k, v = args[:3]
            return value_only_attention(
                q,
                k,
                v,
                attn_mask=kwargs.get("attn_mask"),
                is_causal=bool(kwargs.get("is_causal", False)),
                scale=kwargs.get("scale"),
            )
        return func(*args, **kwargs)
