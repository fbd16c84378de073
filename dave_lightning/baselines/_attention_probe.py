"""A reversible probe that records each timm ViT block's attention map and output.

Inside :func:`attention_probe`, per block ``l`` of a timm ``VisionTransformer``:

* the attention runs unfused (``fused_attn = False`` on that instance), so the post-softmax map
  ``A^l`` exists as a tensor; a forward hook on the attention's ``attn_drop`` (the identity in
  eval mode) replaces it by a leaf copy that requires grad and records that leaf. Forward values
  are unchanged; ``∂s/∂A^l`` of anything computed downstream is then available with no backward
  work upstream of ``A^l``.
* a forward hook on the block records its output ``z^l`` (with its graph) and hands the next block
  a detached copy, so a score computed from ``z^l`` depends on ``A^l`` and on no other layer's map.

Gradient checkpointing is switched off (it would replay the hooks). Every change is made on the
instance and undone on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

__all__ = ["ProbeRecord", "attention_probe"]


@dataclass
class ProbeRecord:
    """What one forward pass left in the probe, per block.

    Attributes:
        attention: For each block, the attention-map leaves ``(n, heads, N, N)`` it produced.
        outputs: For each block, the outputs ``(n, N, D)`` it produced (with their graph).
    """

    attention: list[list[Tensor]] = field(default_factory=list)
    outputs: list[list[Tensor]] = field(default_factory=list)

    def once_per_block(self) -> tuple[list[Tensor], list[Tensor]]:
        """The attention maps and outputs, checking each block ran its attention exactly once.

        Raises:
            RuntimeError: When a block's attention map or output was seen a number of times other
                than one (the caller turns this into a clear error).
        """
        for index, (maps, outputs) in enumerate(zip(self.attention, self.outputs, strict=True)):
            if len(maps) != 1 or len(outputs) != 1:
                raise RuntimeError(
                    f"block {index} produced {len(maps)} attention maps and {len(outputs)} "
                    "outputs in one forward pass (expected one each)"
                )
        return [maps[0] for maps in self.attention], [outputs[0] for outputs in self.outputs]


def _record_attention(
    store: list[Tensor], module: nn.Module, inputs: Any, output: Tensor
) -> Tensor:
    leaf = output.detach().requires_grad_(True)
    store.append(leaf)
    return leaf


def _record_output(store: list[Tensor], module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
    store.append(output)
    return output.detach()


def _set_instance_attribute(module: nn.Module, name: str, value: Any) -> Callable[[], None]:
    """Set ``module.name = value`` on the instance; return the function that undoes it."""
    had_own = name in module.__dict__
    previous = module.__dict__.get(name)
    setattr(module, name, value)

    def restore() -> None:
        if had_own:
            setattr(module, name, previous)
        else:
            delattr(module, name)

    return restore


@contextlib.contextmanager
def attention_probe(vit: VisionTransformer) -> Iterator[ProbeRecord]:
    """Record every block's attention map and output during the forward passes of a block.

    Args:
        vit: A timm ``VisionTransformer`` whose ``blocks`` each hold a timm ``Attention`` as
            ``attn`` (checked by the caller).

    Yields:
        The record the hooks fill.
    """
    record = ProbeRecord()
    undo: list[Callable[[], None]] = []
    try:
        if hasattr(vit, "grad_checkpointing"):
            undo.append(_set_instance_attribute(vit, "grad_checkpointing", False))
        for block in vit.blocks:
            attention = cast(nn.Module, block.attn)
            dropout = cast(nn.Module, attention.attn_drop)
            record.attention.append([])
            record.outputs.append([])
            undo.append(_set_instance_attribute(attention, "fused_attn", False))
            hook = partial(_record_attention, record.attention[-1])
            undo.append(dropout.register_forward_hook(hook).remove)
            hook = partial(_record_output, record.outputs[-1])
            undo.append(block.register_forward_hook(hook).remove)
        yield record
    finally:
        while undo:
            undo.pop()()
