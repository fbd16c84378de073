"""Counting dtype conversions (the copies autocast round trips cost) with a dispatch mode."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class DtypeConversions(TorchDispatchMode):
    """Counts every aten op whose tensor output has another dtype than its first tensor input
    among the copy-like ops (``_to_copy``, ``copy_``): what autocast casts and ``.to()`` cost."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.seen: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in ("_to_copy", "copy_"):
            source = args[1] if name == "copy_" else args[0]
            converts = isinstance(source, torch.Tensor) and isinstance(out, torch.Tensor)
            if converts and source.dtype != out.dtype:
                self.count += 1
                self.seen.append(f"{name} {tuple(source.shape)} {source.dtype}->{out.dtype}")
        return out
