"""Every method with timm's gradient checkpointing on gives the maps it gives with it off.

timm checkpoints in eval mode too, so the recompute of each block runs inside the backward pass;
effective mode's value-only attention must take the same route there as in the forward pass
(on today's main it did not: ``CheckpointError: Recomputed values ... have different metadata``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dave_lightning import available_attributors, effective_mode, get_attributor
from tests.helpers import tiny_vit

FEW_PASSES: dict[str, dict[str, Any]] = {
    "dave": {"num_samples": 3, "noise_alpha": 0.2},
    "integrated_gradients": {"n_steps": 3},
    "smoothgrad": {"nt_samples": 3},
}
TARGETS = [0, 3]
RUN_WITHOUT_CHECKPOINTING = {
    "legrad": "switches checkpointing off for its own pass (its per-block hooks would replay)",
    "random": "never runs the model",
}


def _model(fused: bool) -> nn.Module:
    torch.manual_seed(0)
    return tiny_vit(img_size=16, num_classes=4, fused=fused).eval()


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=["float32", "bf16"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", available_attributors())
def test_every_method_gives_the_same_maps_with_checkpointing(
    name: str, fused: bool, autocast: torch.dtype | None, checkpointed_blocks: list[int]
) -> None:
    """Also under bf16 autocast (the GPU default): the recompute takes the forward's route."""
    model = _model(fused)
    options = FEW_PASSES.get(name, {})
    attributor = get_attributor(name, model, autocast_dtype=autocast, **options)
    without = attributor.attribute(_images(), TARGETS)
    model.set_grad_checkpointing(True)
    with_checkpointing = attributor.attribute(_images(), TARGETS)
    assert bool(checkpointed_blocks) == (name not in RUN_WITHOUT_CHECKPOINTING)
    assert model.grad_checkpointing
    torch.testing.assert_close(with_checkpointing, without, atol=0, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_effective_gradient_with_checkpointing_and_several_targets(
    fused: bool, checkpointed_blocks: list[int]
) -> None:
    """Backward twice through one retained graph: each backward recomputes the blocks."""
    model = _model(fused)
    gradients = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        leaf = _images().requires_grad_(True)
        with effective_mode(model):
            logits = model(leaf)
            first = torch.autograd.grad(logits[:, 0].sum(), leaf, retain_graph=True)[0]
            second = torch.autograd.grad(logits[:, 2].sum(), leaf)[0]
        gradients.append(torch.stack([first, second]))
    assert checkpointed_blocks
    torch.testing.assert_close(gradients[1], gradients[0], atol=0, rtol=0)
