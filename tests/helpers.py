"""Helpers shared across the test packages: the tiny ViT, the leftover-state snapshot, a dtype
conversion counter, and the explicit references more than one test module checks against.

Test-package helpers live beside their tests (``tests/callbacks/helpers.py``,
``tests/baselines/helpers.py``, ``tests/metrics/helpers.py``); test modules import only from
these modules, never from each other, and always absolutely (``from tests.helpers import ...``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from dave_lightning.transforms import TransformParams

# --- the tiny ViT ---------------------------------------------------------------------------


def tiny_vit(
    *,
    img_size: int | tuple[int, int] = 32,
    num_classes: int = 5,
    fused: bool | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    architecture: type[VisionTransformer] = VisionTransformer,
    **kwargs: Any,
) -> VisionTransformer:
    """A test-sized ViT: 8-pixel patches, width 32, two blocks of two heads.

    Args:
        img_size: Input size.
        num_classes: Width of the head.
        fused: Set every attention's ``fused_attn`` flag (``None`` keeps timm's choice).
        seed: Draw the weights from a generator seeded so, leaving the global RNG as it was;
            ``None`` draws them from the global RNG.
        dtype: Parameter dtype.
        architecture: The class (``VisionTransformer`` or a subclass such as the distilled one).
        **kwargs: Further ``VisionTransformer`` options (they override the ones above).
    """
    options: dict[str, Any] = dict(
        img_size=img_size,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=num_classes,
    )
    options.update(kwargs)
    if seed is None:
        model = architecture(**options)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = architecture(**options)
    if fused is not None:
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
    return model.to(dtype)


# --- what a model (and the global state around it) looks like: leftovers show as differences ---

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


@dataclass
class ModelState:
    """Everything code that borrows a model must leave as it found it.

    Compare with ``assert before.differences(ModelState.capture(model)) == []``.
    """

    parameters: dict[str, Tensor]
    buffers: dict[str, Tensor]
    grads: dict[str, Tensor | None]
    requires_grad: dict[str, bool]
    training: dict[str, bool]
    types: dict[str, type]
    hooks: dict[str, tuple[tuple[int, ...], ...]]
    instance_attributes: dict[str, dict[str, Any]]
    global_hooks: tuple[tuple[int, ...], ...]
    rng: Tensor
    grad_enabled: bool
    inference_mode: bool

    @classmethod
    def capture(cls, model: nn.Module, *, ignore_attributes: Collection[str] = ()) -> ModelState:
        """The state of ``model`` and of torch's global switches now.

        Args:
            model: The model.
            ignore_attributes: Public instance attributes that the model's own code changes
                (counters, switches a test flips): left out of ``instance_attributes``.
        """
        return cls(
            parameters={n: p.detach().clone() for n, p in model.named_parameters()},
            buffers={n: b.detach().clone() for n, b in model.named_buffers()},
            grads={
                n: None if p.grad is None else p.grad.detach().clone()
                for n, p in model.named_parameters()
            },
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            training={n: m.training for n, m in model.named_modules()},
            types={n: type(m) for n, m in model.named_modules()},
            hooks={
                n: tuple(tuple(getattr(m, d, {}).keys()) for d in HOOK_DICTS)
                for n, m in model.named_modules()
            },
            instance_attributes={
                n: {
                    k: v
                    for k, v in vars(m).items()
                    if (not k.startswith("_") or k == "forward") and k not in ignore_attributes
                }
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
        for name in ("requires_grad", "training", "types", "hooks"):
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


# --- counting dtype conversions (the copies autocast round trips cost) ------------------------


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


# --- explicit references checked against by more than one test module -----------------------


def warp_params(
    flip: bool = False,
    angle: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> TransformParams:
    """One float64 transformation (flip, angle in degrees, shift in image sizes, scale)."""
    return TransformParams(
        flip=torch.tensor([flip]),
        angle=torch.tensor([angle], dtype=torch.float64),
        shift=torch.tensor([shift], dtype=torch.float64),
        scale=torch.tensor([scale], dtype=torch.float64),
    )


WARP_CASES = {
    "identity": warp_params(),
    "flip": warp_params(flip=True),
    "rotate": warp_params(angle=17.0),
    "shift": warp_params(shift=(0.1, -0.07)),
    "scale-down": warp_params(scale=0.9),
    "everything": warp_params(flip=True, angle=-13.0, shift=(-0.08, 0.05), scale=1.07),
}


def reference_warp_weights(params: TransformParams, height: int, width: int) -> Tensor:
    """Explicit bilinear weights W[out_pixel, in_pixel] of the warp, built pixel by pixel.

    The forward content map is p_out = s · R · Flip · p_in + t in pixel offsets from the centre,
    with R the counter-clockwise rotation in an image frame whose y axis points down.
    """
    double = torch.float64
    theta = math.radians(float(params.angle[0]))
    rotation = torch.tensor(
        [[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]], dtype=double
    )
    flip = torch.diag(torch.tensor([-1.0 if bool(params.flip[0]) else 1.0, 1.0], dtype=double))
    forward = float(params.scale[0]) * rotation @ flip
    inverse = torch.linalg.inv(forward)
    shift = torch.tensor(
        [float(params.shift[0, 0]) * width, float(params.shift[0, 1]) * height], dtype=double
    )
    weights = torch.zeros(height * width, height * width, dtype=double)
    for row in range(height):
        for col in range(width):
            out = torch.tensor([col + 0.5 - width / 2, row + 0.5 - height / 2], dtype=double)
            source = inverse @ (out - shift)
            x = float(source[0]) + width / 2 - 0.5
            y = float(source[1]) + height / 2 - 0.5
            x0, y0 = math.floor(x), math.floor(y)
            for dy in (0, 1):
                for dx in (0, 1):
                    xi, yi = x0 + dx, y0 + dy
                    weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
                    if 0 <= xi < width and 0 <= yi < height and weight > 0:
                        weights[row * width + col, yi * width + xi] += weight
    return weights


def explicit_lower_median(values: list[float]) -> float:
    """The ``(n - 1) // 2``-th smallest value: for an even count the lower of the middle two."""
    return sorted(values)[(len(values) - 1) // 2]


def reference_robust_mean(samples: np.ndarray) -> np.ndarray:
    """Per element: drop samples farther than 2.5·(1.4826·MAD + 1e-8) from the median, average.

    Both the median and the MAD are lower medians, as ``torch.median`` in the reference code.
    """
    out = np.empty(samples.shape[1:])
    for index in np.ndindex(*samples.shape[1:]):
        values = [float(v) for v in samples[(slice(None), *index)]]
        center = explicit_lower_median(values)
        mad = explicit_lower_median([abs(v - center) for v in values])
        kept = [v for v in values if abs(v - center) <= 2.5 * (1.4826 * mad + 1e-8)]
        out[index] = sum(kept) / len(kept)
    return out
