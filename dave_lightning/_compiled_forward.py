"""DAVE's opt-in compiled passes: the model in effective mode through ``torch.compile``.

:class:`CompiledForward` wraps the model once with ``torch.compile`` (default backend,
inductor); each pass calls it on the stacked batch of noisy, warped inputs, and
``torch.autograd.grad`` then runs the backward that AOTAutograd compiled with it. The warp, the
noise draw and the aggregation stay eager (they are a small part of a pass).

How it stays exact and bounded:

* The graph is traced *inside* :func:`~dave_lightning.effective_mode`, through its per-instance
  forward overrides and the custom autograd functions of Step I (the frozen LayerNorm scale and
  GELU gate, the value-only qkv projection and attention). Dynamo guards on the code of every
  module's ``forward``, so a graph traced in effective mode is never reused outside it (nor the
  other way round), and re-entering effective mode on a later call reuses it.
* The batch dimension is marked dynamic (``torch._dynamo.maybe_mark_dynamic``): one graph serves
  every pass size, the last partial pass included (a pass of one input gets its own graph, as
  ``torch.compile`` specialises size 1). New graphs come only with a new image size, number of
  targets, dtype, autocast setting or module mode, so a long run compiles once or twice.
* The model is not modified: ``torch.compile`` returns a wrapper that holds it.

The first pass pays the compilation (tens of seconds for a ViT on a CPU; a C++ compiler is needed
on the CPU). Gradient checkpointing (timm's ``set_grad_checkpointing``) is traced as it is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CompiledForward"]


class CompiledForward:
    """``model(inputs)`` through ``torch.compile``, compiled on the first call.

    Args:
        model: The network; it is held, not changed.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> forward = CompiledForward(model)
        >>> forward.compiled is None
        True
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.compiled: Any = None
        """The ``torch.compile`` wrapper of :attr:`model`, once the first pass made it."""

    def __call__(self, inputs: Tensor) -> Tensor:
        """The model's output for ``inputs``, with their batch dimension dynamic."""
        if self.compiled is None:
            self.compiled = torch.compile(self.model)
        torch._dynamo.maybe_mark_dynamic(inputs, 0)
        out: Tensor = self.compiled(inputs)
        return out
