"""Helpers shared by the baseline tests: tiny models and a full snapshot of a model's state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)
GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


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


def vit(*, dtype: torch.dtype = torch.float32, seed: int = 0, **kwargs: Any) -> VisionTransformer:
    """The tests' tiny ViT (as ``tests/conftest.py::tiny_vit``): 32x32, patch 8, width 32, depth 2.

    Its weights depend on ``seed`` only; building it leaves the global RNG as it was.
    """
    options: dict[str, Any] = dict(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5
    )
    options.update(kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VisionTransformer(**options).to(dtype)


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


@dataclass
class ModelState:
    """Everything an attributor must leave as it found it."""

    parameters: dict[str, Tensor]
    buffers: dict[str, Tensor]
    grads: dict[str, Tensor | None]
    requires_grad: dict[str, bool]
    training: dict[str, bool]
    hooks: dict[str, tuple[tuple[int, ...], ...]]
    instance_attributes: dict[str, dict[str, Any]]
    global_hooks: tuple[tuple[int, ...], ...]
    rng: Tensor
    grad_enabled: bool
    inference_mode: bool

    @classmethod
    def capture(cls, model: nn.Module) -> ModelState:
        return cls(
            parameters={n: p.detach().clone() for n, p in model.named_parameters()},
            buffers={n: b.detach().clone() for n, b in model.named_buffers()},
            grads={
                n: None if p.grad is None else p.grad.detach().clone()
                for n, p in model.named_parameters()
            },
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            training={n: m.training for n, m in model.named_modules()},
            hooks={
                n: tuple(tuple(getattr(m, d, {}).keys()) for d in HOOK_DICTS)
                for n, m in model.named_modules()
            },
            instance_attributes={
                n: {k: v for k, v in vars(m).items() if not k.startswith("_") or k == "forward"}
                for n, m in model.named_modules()
            },
            global_hooks=tuple(
                tuple(getattr(nn.modules.module, d).keys()) for d in GLOBAL_HOOK_DICTS
            ),
            rng=torch.get_rng_state(),
            grad_enabled=torch.is_grad_enabled(),
            inference_mode=torch.is_inference_mode_enabled(),
        )

    def differences(self, other: ModelState) -> list[str]:
        """Human-readable differences; empty when the states agree."""
        found = []
        for name in ("parameters", "buffers"):
            mine, theirs = getattr(self, name), getattr(other, name)
            found += [f"{name}: {n}" for n in mine if not torch.equal(mine[n], theirs[n])]
        for n, grad in self.grads.items():
            other_grad = other.grads[n]
            if (grad is None) != (other_grad is None) or (
                grad is not None and other_grad is not None and not torch.equal(grad, other_grad)
            ):
                found.append(f"grad: {n}")
        for name in ("requires_grad", "training", "hooks"):
            mine, theirs = getattr(self, name), getattr(other, name)
            found += [f"{name}: {n}" for n in mine if mine[n] != theirs.get(n)]
        for n, attributes in self.instance_attributes.items():
            theirs = other.instance_attributes.get(n, {})
            if attributes.keys() != theirs.keys() or any(
                attributes[k] is not theirs[k] and attributes[k] != theirs[k] for k in attributes
            ):
                found.append(f"instance attributes: {n}")
        for name in ("global_hooks", "grad_enabled", "inference_mode"):
            if getattr(self, name) != getattr(other, name):
                found.append(name)
        if not torch.equal(self.rng, other.rng):
            found.append("global RNG")
        return found
