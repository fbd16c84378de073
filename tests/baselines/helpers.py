"""Helpers shared by the baseline tests: fast options, seeded images, randomised embeddings.

The tiny ViT and the model-state snapshot are in ``tests/helpers.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

# options that keep every registered method fast on the tiny model
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "dave": {"num_samples": 2, "noise_alpha": 0.2},
    "gradient": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 2},
    "smoothgrad": {"nt_samples": 2},
    "effective_input_x_gradient": {},
    "legrad": {},
    "random": {},
}


def random_images(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal images from a seeded local generator (the global RNG is left alone)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def randomise_embeddings(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialised tokens and embeddings random values, so every path is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "token" in name or "pos_embed" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return model
