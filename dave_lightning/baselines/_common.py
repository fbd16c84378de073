"""Small helpers shared by the baselines."""

from __future__ import annotations

from torch import Tensor

__all__ = ["autograd_safe"]


def autograd_safe(tensor: Tensor) -> Tensor:
    """``tensor``, or an ordinary copy when it is an inference tensor.

    :meth:`Attributor.attribute` hands ``_attribute`` the targets as given when they are already a
    CPU int64 tensor, so targets built under ``torch.inference_mode()`` arrive as inference
    tensors, which autograd refuses to save (``gather`` saves its index). Call this inside the
    attribution session, where inference mode is off.
    """
    return tensor.clone() if tensor.is_inference() else tensor
