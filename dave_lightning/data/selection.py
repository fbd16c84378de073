"""Which images a protocol may use: confidently and correctly classified ones.

The paper's GridPG and pixel-deletion protocols keep only images the model classifies correctly
with a high softmax confidence (0.9 in the reference script), so that a map explains a decision
the model actually makes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Flatten()  # "logits" are the two pixel values
    >>> images = torch.tensor([[3.0, 0.0], [0.0, 0.1], [0.0, 3.0]]).view(3, 1, 1, 2)
    >>> confidently_correct(model, images, torch.tensor([0, 1, 0]), min_confidence=0.9)
    tensor([ True, False, False])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dave_lightning._common import check_class_indices, check_logits, restored_modes
from dave_lightning.data._checks import (
    check_fraction,
    check_image_batch,
    check_int,
    check_labels,
    describe,
)
from dave_lightning.errors import BadInputError

__all__ = ["confidently_correct"]


def confidently_correct(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    min_confidence: float = 0.0,
    batch_size: int = 64,
) -> Tensor:
    """Which images ``model`` classifies correctly with softmax confidence ``>= min_confidence``.

    The model runs in eval mode without gradients, ``batch_size`` images at a time on the device
    of its first parameter (or of ``images`` when it has none); every module's ``training`` flag
    is restored afterwards, also when the model raises.

    Args:
        model: A classifier returning ``(B, num_classes)`` logits.
        images: ``(N, C, H, W)`` in the model's input space.
        labels: ``(N,)`` true classes.
        min_confidence: The least softmax probability of the true class, in ``[0, 1]``.
        batch_size: Images per forward pass.

    Returns:
        A ``(N,)`` bool CPU tensor: the prediction is the label and its probability is at least
        ``min_confidence``.
    """
    if not isinstance(model, nn.Module):
        raise BadInputError.for_argument("model", "a torch.nn.Module", describe(model))
    images = check_image_batch(images)
    labels = check_labels(labels, images.shape[0])
    min_confidence = check_fraction("min_confidence", min_confidence)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    parameter = next(model.parameters(), None)
    device = images.device if parameter is None else parameter.device
    kept = []
    with restored_modes(model), torch.no_grad():
        model.eval()
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start : start + batch_size].to(device))
            chunk = labels[start : start + batch_size]
            kept.append(_correct_and_confident(logits, chunk, min_confidence))
    return torch.cat(kept) if kept else torch.zeros(0, dtype=torch.bool)


def _correct_and_confident(logits: Any, labels: Tensor, min_confidence: float) -> Tensor:
    logits = check_logits(logits, len(labels))
    width = logits.shape[1]
    check_class_indices(labels, width, "labels", f"class indices below the model's {width} outputs")
    probabilities = logits.detach().float().softmax(dim=1).cpu()
    confidence = probabilities.gather(1, labels.unsqueeze(1)).squeeze(1)
    return (probabilities.argmax(dim=1) == labels) & (confidence >= min_confidence)
