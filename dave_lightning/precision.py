"""The precision the monitor and ``explain`` attribute in: bfloat16 on a GPU, float32 elsewhere.

Their ``autocast`` option takes ``"auto"`` (the default), ``None`` (float32, autocast off),
``"bf16"`` or ``"fp16"``. ``"auto"`` means bfloat16 autocast on a CUDA device with native bfloat16
(compute capability 8.0 or newer: A100, H100, RTX 30xx and later) and float32 everywhere else.
:class:`~dave_lightning.DAVE` and the other attributors themselves keep float32 unless asked
(``autocast_dtype=``): the choice is made where the device is known.

Why (``benchmarks/bf16_fidelity.py --timm vit_small_patch16_224 --threads 2``: N = 64, DAVE on
the same images in both precisions with two seeds; run on a CPU with AVX512-BF16, whose bf16
matmuls accumulate in float32 as cuBLAS's do): bf16's error is lost in DAVE's own Monte-Carlo
noise. A bf16 map correlates with another seed's float32 map as two float32 seeds do: 0.785
against 0.785 and 0.942 against 0.943 on the demo's two trained ViTs (same seed: 0.995 and
0.998), 0.529 against 0.529 on a random-weight ViT-S/16 at 224 on photographs (same seed: 0.936).
On the trained ViTs the monitor's metrics moved by at most 0.5 ± 0.4 points in bf16, against up
to 4.6 ± 2.4 points between two float32 seeds. The issue that asked for this measured the same
on an H200 with a trained ViT (0.996 same seed; 0.818 against 0.819) and bf16 DAVE 3.8 times
faster than float32 there (ViT-B/16, N = 50).

The CPU keeps float32: whether bf16 is faster there depends on the chip. On that CPU (native
bf16) DAVE took 0.59x float32's time for ViT-S/16 at 224 and 0.82-0.85x for the demo's small
ViT; a CPU without native bf16 emulates it, and torch has no public way to tell them apart.
Ask for it there with ``"bf16"``.

Example:
    >>> import torch
    >>> autocast_dtype("auto", torch.device("cpu")) is None
    True
    >>> autocast_dtype("bf16", "cpu")
    torch.bfloat16
"""

from __future__ import annotations

import torch

__all__ = ["AUTOCAST_CHOICES", "AUTOCAST_FLAGS", "autocast_dtype", "bf16_by_default"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTOCAST_CHOICES = (None, "auto", *_DTYPES)
"""Every value the ``autocast`` option takes (``None``: float32, autocast off)."""
AUTOCAST_FLAGS = tuple("off" if choice is None else choice for choice in AUTOCAST_CHOICES)
"""The same choices as ``dave-lightning explain --autocast`` spells them (``off`` for ``None``)."""


def bf16_by_default(device: torch.device | str) -> bool:
    """Whether ``"auto"`` means bfloat16 on ``device``: CUDA with native bf16 (capability ≥ 8).

    Example:
        >>> bf16_by_default("cpu")
        False
    """
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def autocast_dtype(choice: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype an ``autocast`` choice means on ``device`` (``None``: float32).

    Args:
        choice: One of :data:`AUTOCAST_CHOICES` (checked by the caller, which knows the
            option's name).
        device: Where the attribution runs.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None`` (autocast off).

    Example:
        >>> autocast_dtype(None, "cpu") is None
        True
    """
    if choice == "auto":
        return torch.bfloat16 if bf16_by_default(device) else None
    return None if choice is None else _DTYPES[choice]
