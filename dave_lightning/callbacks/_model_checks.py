"""The network as the monitor finds it: its output checked once, unsupported models explained.

A LightningModule is attributed as a whole unless ``model_attribute`` names the classifier inside
it. One holding an EMA copy, a teacher or a module effective mode cannot freeze (e.g. an unused
``BatchNorm``) is refused by the methods; the monitor shortens that refusal to the fix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dave_lightning.attributor import check_logits
from dave_lightning.callbacks._precision import float32_network
from dave_lightning.callbacks._training_state import preserved_training_state
from dave_lightning.errors import BadInputError, UnsupportedModelError

__all__ = ["check_network_output", "short_unsupported_error"]

_SHOWN = 3
"""How many offending modules a shortened error names."""


def _classifier_candidates(pl_module: nn.Module) -> list[str]:
    """Direct attributes of the LightningModule that look like a classifier (a timm network)."""
    return [
        name
        for name, child in pl_module.named_children()
        if any(hasattr(module, "patch_embed") for module in child.modules())
        or hasattr(child, "get_classifier")
    ]


def short_unsupported_error(
    pl_module: nn.Module, method: str, error: UnsupportedModelError
) -> UnsupportedModelError:
    r"""A few lines that name the first offending modules and point to ``model_attribute=``.

    Example:
        >>> from torch import nn
        >>> error = UnsupportedModelError("cannot freeze X; offending modules:\n  'a': ...\n"
        ...                               "  'b': ...\nSupported:\n  ...")
        >>> print(short_unsupported_error(nn.Sequential(), "dave", error))
        ... # doctest: +NORMALIZE_WHITESPACE
        AttributionMonitor: method 'dave' cannot explain the LightningModule Sequential as a whole
        ('a': ...; 'b': ...). Pass `model_attribute=` with the attribute path of the classifier
        inside it.
    """
    lines = str(error).splitlines()
    offending = [line.strip() for line in lines if line.startswith("  '")]
    shown = "; ".join(offending[:_SHOWN]) or (lines[0] if lines else type(error).__name__)
    more = len(offending) - _SHOWN
    shown += f"; and {more} more" if more > 0 else ""
    candidates = _classifier_candidates(pl_module)
    hint = (
        f", e.g. model_attribute={candidates[0]!r}"
        + (f" (candidates: {', '.join(map(repr, candidates))})" if len(candidates) > 1 else "")
        if candidates
        else ""
    )
    return UnsupportedModelError(
        f"AttributionMonitor: method {method!r} cannot explain the LightningModule "
        f"{type(pl_module).__name__} as a whole ({shown}). Pass `model_attribute=` with the "
        f"attribute path of the classifier inside it{hint}."
    )


def check_network_output(
    network: nn.Module, images: Tensor, labels: Tensor | None, float32: bool
) -> None:
    """One forward on one probe image: the network must return ``(B, num_classes)`` logits.

    Run before any attribution (training state restored). With ``labels`` (``target="label"``)
    the labels must be classes of that output.

    Raises:
        BadInputError: Naming ``model`` (a dict, tuple or other output) or ``batch labels``.
    """
    with (
        preserved_training_state(network),
        torch.inference_mode(False),
        torch.no_grad(),
        float32_network(network, float32),
    ):
        network.eval()
        parameter = next(network.parameters())
        output: Any = network(images[:1].to(parameter.device, parameter.dtype))
    width = check_logits(output).shape[1]
    if labels is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= width:
            raise BadInputError.for_argument(
                "batch labels",
                f"class indices in [0, {width}) (the width of the model's output)",
                f"indices from {low} to {high}",
            )
