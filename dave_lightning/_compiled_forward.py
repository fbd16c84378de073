"""DAVE's opt-in compiled passes: the model in effective mode through ``torch.compile``.

:class:`CompiledForward` compiles one call of the model with ``torch.compile`` (default
backend, inductor); each pass calls it on the stacked batch of noisy, warped inputs, and
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
* The parameters go in detached (``torch.func.functional_call`` with ``p.detach()`` for each
  parameter, which swaps them in for the call and swaps the originals back, also on an error).
  AOTAutograd compiles the backward for every input that requires a gradient, not for the one
  ``torch.autograd.grad`` asks for; with the parameters attached it computed every weight
  gradient and threw it away (ViT-Ti/16, 32 inputs per pass, 2 CPU threads: 1.21x eager's time;
  detached: 0.91x). The parameters themselves, their ``.grad`` and ``requires_grad`` are not
  touched. Under timm's gradient checkpointing the model is compiled as it is instead (the
  recompute in backward runs after the swap is undone), with the weight gradients' cost.

The first pass pays the compilation (tens of seconds for a ViT on a CPU; a C++ compiler is needed
on the CPU).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["CompiledForward"]


def _call_with_parameters(model: nn.Module, parameters: dict[str, Tensor], inputs: Tensor) -> Any:
    return functional_call(model, parameters, (inputs,))


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
        """The ``torch.compile`` wrapper of the call, once the first pass made it."""
        self._compiled_model: Any = None

    def __call__(self, inputs: Tensor) -> Tensor:
        """The model's output for ``inputs``, with their batch dimension dynamic."""
        torch._dynamo.maybe_mark_dynamic(inputs, 0)
        if _checkpointing(self.model):
            # the recompute in backward runs outside the call that swapped the parameters
            if self._compiled_model is None:
                self._compiled_model = torch.compile(self.model)
            checkpointed: Tensor = self._compiled_model(inputs)
            return checkpointed
        if self.compiled is None:
            self.compiled = torch.compile(_call_with_parameters)
        detached = {name: p.detach() for name, p in self.model.named_parameters()}
        out: Tensor = self.compiled(self.model, detached, inputs)
        return out


def _checkpointing(model: nn.Module) -> bool:
    """Whether any module of ``model`` has timm's gradient checkpointing on."""
    return any(getattr(module, "grad_checkpointing", False) is True for module in model.modules())
