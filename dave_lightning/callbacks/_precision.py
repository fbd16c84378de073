"""Attribution in float32 for a network trained in half precision (``precision="bf16-true"``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["float32_network"]

_HALF = (torch.float16, torch.bfloat16)


def _half_tensors(network: nn.Module) -> list[tuple[nn.Module, str, Tensor]]:
    """Every half-precision parameter and buffer, with the module that owns it."""
    found = []
    for module in network.modules():
        owned = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        found += [(module, name, tensor) for name, tensor in owned if tensor.dtype in _HALF]
    return found


def _float32_copy(tensor: Tensor) -> Tensor:
    copy = tensor.detach().to(torch.float32)
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(copy, requires_grad=tensor.requires_grad)
    return copy


@contextlib.contextmanager
def float32_network(network: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Run a block on float32 copies of the network's float16/bfloat16 parameters and buffers.

    The module attributes are pointed at the copies and pointed back on exit, also when the
    block raises; the originals (the tensors the optimizer updates) are never written, so training
    is unaffected. Tied parameters stay tied. A float32 (or float64) network is left as it is.

    Args:
        network: The classifier the monitor explains.
        enabled: ``False`` leaves the network as it is (autocast was opted in).

    Yields:
        Nothing.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 2).to(torch.bfloat16)
        >>> original = layer.weight
        >>> with float32_network(layer):
        ...     layer.weight.dtype
        torch.float32
        >>> layer.weight is original, layer.weight.dtype
        (True, torch.bfloat16)
    """
    swapped = _half_tensors(network) if enabled else []
    copies: dict[int, Tensor] = {}
    try:
        for module, name, tensor in swapped:
            if id(tensor) not in copies:
                copies[id(tensor)] = _float32_copy(tensor)
            setattr(module, name, copies[id(tensor)])
        yield
    finally:
        for module, name, tensor in swapped:
            setattr(module, name, tensor)
