"""Effective mode as a first version (and the authors' reference code) makes it: by detaching.

The explicit, unfused softmax, the LayerNorm scale and the GELU gate are computed by ordinary
autograd operations and detached; the backward then runs the ordinary (dense) derivatives of
everything else, with the gradients of q and k computed and dropped. The benchmarks compare
DAVE's Step I against this.
"""

from __future__ import annotations

import math
import types

import torch
from timm.layers import Attention
from torch import Tensor, nn

__all__ = ["NaiveEffective"]


def _naive_attention(
    self: Attention, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False
) -> Tensor:
    b, n, c = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k = self.q_norm(q), self.k_norm(k)
    weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1).detach()
    return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def _naive_layer_norm(self: nn.LayerNorm, x: Tensor) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    inverse_std = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + self.eps)
    return (x - mean) * inverse_std.detach() * self.weight + self.bias


def _naive_gelu(self: nn.Module, x: Tensor) -> Tensor:
    return x * (0.5 * (1 + torch.erf(x / math.sqrt(2)))).detach()


class NaiveEffective:
    """Instance overrides that make the effective gradient the way a first version would."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        for module in self.model.modules():
            if isinstance(module, Attention):
                module.forward = types.MethodType(_naive_attention, module)  # type: ignore[method-assign]
            elif isinstance(module, nn.LayerNorm):
                module.forward = types.MethodType(_naive_layer_norm, module)  # type: ignore[method-assign]
            elif isinstance(module, nn.GELU):
                module.forward = types.MethodType(_naive_gelu, module)  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        for module in self.model.modules():
            module.__dict__.pop("forward", None)
