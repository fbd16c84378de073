"""``max_batch_size="auto"``: how many model inputs one forward/backward pass should take (private).

The rule, from an estimate of the activations a ViT keeps for its backward per input:

* per input ``A = depth · tokens · (16 · width + 2 · heads · tokens) · bytes`` (per block and
  token about 16 width-sized vectors: the norms, qkv, the attention output and projection, the
  MLP's 4x hidden layer before and after the GELU; plus the attention logits and probabilities),
  ``bytes`` being the element size of the compute dtype (2 under bf16/fp16 autocast);
* **CPU**: ``clamp(2.5 GiB / A, 1, 32)``, the budget also at most an eighth of the machine's
  memory. Past a few dozen inputs a pass gains no arithmetic efficiency on a CPU, while each
  call maps and unmaps ever larger buffers (glibc page faults): ViT-S/16 at 224 on 2 threads
  measured 0.112 s per input at batch 1, 0.075-0.078 s from 8 to 32 and 0.111 s at 64. With
  this rule ViT-Ti/16 and ViT-S/16 get 32, ViT-B/16 16 (at 224, float32);
* **CUDA**: ``clamp(0.5 · free device memory / A, 1, 256)`` (on an H200 256 inputs per pass beat
  64 by 10-17 % for ViT-B/16);
* a model whose shape is unknown (not a timm-style ViT): 16 on the CPU, 64 elsewhere.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> vit_s = VisionTransformer(embed_dim=384, depth=12, num_heads=6)
    >>> auto_batch_size(vit_s, (3, 224, 224), torch.device("cpu"), torch.float32)
    32
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CPU_BUDGET_BYTES", "CPU_MAX", "CUDA_MAX", "activation_bytes", "auto_batch_size"]

CPU_BUDGET_BYTES = int(2.5 * 2**30)
CPU_MAX = 32
CUDA_MAX = 256
_UNKNOWN_CPU = 16
_UNKNOWN_ELSEWHERE = 64
_CUDA_FRACTION = 0.5


def _vit_shape(model: nn.Module) -> tuple[int, int, int, tuple[int, int], int] | None:
    """``(depth, width, heads, patch, prefix tokens)`` of the first timm-style ViT in ``model``."""
    for module in model.modules():
        blocks = getattr(module, "blocks", None)
        width = getattr(module, "embed_dim", None)
        patch_embed = getattr(module, "patch_embed", None)
        patch = getattr(patch_embed, "patch_size", None)
        if isinstance(blocks, nn.Sequential | nn.ModuleList) and isinstance(width, int) and patch:
            attention = getattr(blocks[0], "attn", None) if len(blocks) else None
            heads = getattr(attention, "num_heads", max(1, width // 64))
            size = (patch, patch) if isinstance(patch, int) else tuple(patch)
            prefix = getattr(module, "num_prefix_tokens", 1)
            return len(blocks), width, int(heads), (int(size[0]), int(size[1])), int(prefix)
    return None


def activation_bytes(
    model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype
) -> int | None:
    """The estimated activation bytes one input keeps for the backward, ``None`` if unknown.

    Args:
        model: The network (a timm ViT, or a module holding one).
        input_shape: ``(C, H, W)`` of one input.
        dtype: The compute dtype.

    Returns:
        ``A`` of the rule in the module docstring.
    """
    shape = _vit_shape(model)
    if shape is None:
        return None
    depth, width, heads, (patch_h, patch_w), prefix = shape
    tokens = (input_shape[-2] // patch_h) * (input_shape[-1] // patch_w) + prefix
    per_token = 16 * width + 2 * heads * tokens
    return depth * tokens * per_token * torch.empty((), dtype=dtype).element_size()


def _cpu_budget() -> int:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return CPU_BUDGET_BYTES
    return min(CPU_BUDGET_BYTES, memory // 8)


def auto_batch_size(
    model: nn.Module, input_shape: Sequence[int], device: torch.device, dtype: torch.dtype
) -> int:
    """The number of inputs per pass that ``"auto"`` picks (the rule of the module docstring).

    Args:
        model: The network.
        input_shape: ``(C, H, W)`` of one input.
        device: Where the passes run.
        dtype: The compute dtype (the autocast dtype when autocast is on).

    Returns:
        A batch size of at least 1.
    """
    per_input = activation_bytes(model, input_shape, dtype)
    if device.type == "cpu":
        if per_input is None:
            return _UNKNOWN_CPU
        return max(1, min(CPU_MAX, _cpu_budget() // per_input))
    if per_input is None or device.type != "cuda":  # no free-memory figure: a middle size
        return _UNKNOWN_ELSEWHERE
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(CUDA_MAX, int(_CUDA_FRACTION * free) // per_input))
