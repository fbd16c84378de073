"""Step I of DAVE: a reversible, per-instance *effective mode* for timm Vision Transformers.

Every ViT layer is an input-dependent linear operator, ``F(X) = L(X) X + b``. Inside
:func:`effective_mode` the backward pass keeps only ``L(X)`` and drops the operator variation,
while every forward value stays exactly what the model computes normally:

* attention: the softmax matrix is constant (the outputs of each attention's ``q_norm`` and
  ``k_norm`` are detached, so gradient flows through ``v`` only and timm's own fused or unfused
  kernel, attention masks and ``is_causal`` handling stay in place; a sigmoid output gate, when the
  attention has one, is constant too; the fused kernel's backward is replaced by a value-only
  one on every device, see :mod:`dave_lightning._value_only_attention`);
* LayerNorm: ``1 / sqrt(var + eps)`` is constant;
* GELU (exact, tanh, QuickGELU): the gate ``GELU(x) / x`` is constant.

Everything else in a timm ``VisionTransformer`` is affine. The change is made per module instance
(instance ``forward`` overrides and forward hooks) and fully undone on exit, also when the body
raises. Nothing is patched on a class or a library function. One piece of state is
thread-local rather than per instance, and only for the duration of one attention's forward:
each overridden attention ``forward`` pushes a
:class:`~dave_lightning._value_only_attention.ValueOnlyAttentionMode` (a ``TorchFunctionMode``)
onto the current thread's torch-function mode stack while it runs (and again while gradient
checkpointing recomputes it in backward) and pops it when it returns. For that time every torch
function called on that thread, by the attention and by any hook run inside it, passes through
the mode, which reroutes only ``F.scaled_dot_product_attention`` calls whose q and k carry no
gradient and hands every other call to the library unchanged. Outside an attention's forward,
and on other threads, no mode is active, also inside the ``with`` block.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4).eval()
    >>> x = torch.randn(1, 3, 32, 32, requires_grad=True)
    >>> with effective_mode(model):
    ...     logit = model(x)[0, 1]
    ...     (effective_gradient,) = torch.autograd.grad(logit, x)
    >>> effective_gradient.shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from timm.layers import (
    GELU,
    Attention,
    DropPath,
    GELUTanh,
    LayerScale,
    Mlp,
    PatchDropout,
    PatchEmbed,
    QuickGELU,
)
from timm.layers import LayerNorm as TimmLayerNorm
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, ResPostBlock, VisionTransformer
from torch import Tensor, nn

from dave_lightning._frozen_ops import (
    frozen_gate_gelu,
    frozen_gate_quick_gelu,
    frozen_scale_layer_norm,
    value_only_qkv,
)
from dave_lightning._value_only_attention import ValueOnlyAttentionMode
from dave_lightning.errors import UnsupportedModelError

__all__ = ["SUPPORTED_MODULES", "check_supported", "effective_mode"]

_AFFINE: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.Identity,
    nn.Dropout,
    DropPath,
    PatchDropout,
    LayerScale,
)
_CONTAINERS: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    VisionTransformer,
    VisionTransformerDistilled,
    Block,
    ResPostBlock,
    Mlp,
    PatchEmbed,
)
_LAYER_NORMS: tuple[type[nn.Module], ...] = (nn.LayerNorm, TimmLayerNorm)
_GELUS: tuple[type[nn.Module], ...] = (nn.GELU, GELU, GELUTanh, QuickGELU)
_ATTENTIONS: tuple[type[nn.Module], ...] = (Attention,)
_LINEAR_POOLS = ("", "token", "avg", "avgmax", "max")
_LIBRARY_PREFIXES = ("torch.", "timm.", "torchvision.")
_NOT_IN_FORWARD_PREFIXES = ("torchmetrics.",)

SUPPORTED_MODULES: dict[str, tuple[type[nn.Module], ...]] = {
    "attention (softmax frozen; fused or unfused, qk_norm, masks, is_causal)": _ATTENTIONS,
    "layer norm (1/std frozen)": _LAYER_NORMS,
    "GELU (gate frozen; exact, tanh, quick)": _GELUS,
    "affine": _AFFINE,
    "containers (their own forward is affine)": _CONTAINERS,
}
"""The module classes effective mode handles, grouped by how it treats them."""


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _short_name(cls: type) -> str:
    root = cls.__module__.split(".")[0]
    return f"{'nn' if root == 'torch' else root}.{cls.__qualname__}"


def _describe_supported() -> str:
    lines = []
    for role, classes in SUPPORTED_MODULES.items():
        names = ", ".join(sorted(_short_name(cls) for cls in classes))
        lines.append(f"  {role}: {names}")
    return "\n".join(lines)


def _problem_with_known(module: nn.Module) -> str | None:
    """Why a module of a supported class is still unsupported, or ``None``."""
    if isinstance(module, VisionTransformer):
        pool = getattr(module, "global_pool", "token")
        if getattr(module, "attn_pool", None) is not None or pool not in _LINEAR_POOLS:
            return f"global_pool={pool!r} (supported: {', '.join(map(repr, _LINEAR_POOLS))})"
    if isinstance(module, nn.GELU) and module.approximate not in ("none", "tanh"):
        return f"approximate={module.approximate!r}"
    if isinstance(module, Attention) and not (
        type(module.qkv) is nn.Linear and module.qkv.out_features % 3 == 0
    ):
        return "its qkv projection is not one nn.Linear producing q, k and v"
    return None


_KNOWN = _AFFINE + _CONTAINERS + _LAYER_NORMS + _GELUS + _ATTENTIONS


def _classify(module: nn.Module, affine_modules: tuple[type[nn.Module], ...]) -> str | None:
    """Return a reason when ``module`` cannot be put into effective mode, else ``None``."""
    cls = type(module)
    if cls in _KNOWN:
        return _problem_with_known(module)
    if cls in affine_modules:
        return None
    qualified = _qualified_name(cls)
    if qualified.startswith(_NOT_IN_FORWARD_PREFIXES) or isinstance(module, nn.modules.loss._Loss):
        return None  # metrics and losses held by a LightningModule are not part of its forward
    if qualified.startswith(_LIBRARY_PREFIXES):
        return f"{qualified} is not a module effective mode knows how to freeze"
    if isinstance(module, _KNOWN):
        base = next(_qualified_name(k) for k in _KNOWN if isinstance(module, k))
        return f"{qualified} subclasses {base}; effective mode cannot vouch for its forward"
    if next(module.children(), None) is None:
        return f"{qualified} is a leaf module of unknown operation"
    return None  # a user container: its children are checked, its own code is trusted


def check_supported(model: nn.Module, affine_modules: Sequence[type[nn.Module]] = ()) -> None:
    """Raise :class:`UnsupportedModelError` unless every module of ``model`` is supported.

    User-defined containers (modules outside torch/timm/torchvision that have children) are
    accepted: their children are checked, but a non-linearity written as a function call in their
    own ``forward`` cannot be seen. Loss modules and torchmetrics metrics are ignored.

    Args:
        model: The network to check.
        affine_modules: Extra module classes the caller vouches for as affine.

    Raises:
        UnsupportedModelError: Naming every offending module and listing the supported classes.

    Example:
        >>> from torch import nn
        >>> try:
        ...     check_supported(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
        ... except UnsupportedModelError as error:
        ...     print(str(error).splitlines()[1].split(" is ")[0])
          '1': torch.nn.modules.batchnorm.BatchNorm1d
    """
    extra = tuple(affine_modules)
    problems = [
        f"  '{name}': {reason}"
        for name, module in model.named_modules()
        if (reason := _classify(module, extra)) is not None
    ]
    if problems:
        raise UnsupportedModelError(
            f"effective mode cannot freeze {type(model).__qualname__}; offending modules:\n"
            + "\n".join(problems)
            + "\nSupported:\n"
            + _describe_supported()
            + "\nPass `affine_modules=(MyModule,)` for module classes you know to be affine."
        )


@dataclass
class _Restorer:
    """Undo list of the per-instance changes made by :func:`effective_mode`."""

    undo: list[Callable[[], None]] = field(default_factory=list)

    def override_forward(self, module: nn.Module, forward: Callable[..., Any]) -> None:
        had_own = "forward" in module.__dict__
        previous = module.__dict__.get("forward")
        setattr(module, "forward", types.MethodType(forward, module))  # noqa: B010

        def restore() -> None:
            if had_own:
                setattr(module, "forward", previous)  # noqa: B010
            else:
                delattr(module, "forward")

        self.undo.append(restore)

    def detach_output(self, module: nn.Module) -> None:
        handle = module.register_forward_hook(_detach_output_hook)
        self.undo.append(handle.remove)

    def restore_all(self) -> None:
        while self.undo:
            self.undo.pop()()


def _detach_output_hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
    return output.detach()


def _parameter(value: Tensor | None, detach: bool) -> Tensor | None:
    return value.detach() if detach and value is not None else value


# The forward overrides are plain module-level functions bound to their module with
# ``types.MethodType``: ``torch.compile`` traces through bound functions, but not through bound
# ``functools.partial`` objects (``InternalTorchDynamoError``: a partial has no ``__name__``).


def _layer_norm(self: nn.LayerNorm, x: Tensor, detach: bool) -> Tensor:
    weight, bias = _parameter(self.weight, detach), _parameter(self.bias, detach)
    return frozen_scale_layer_norm(x, tuple(self.normalized_shape), weight, bias, self.eps)


def _effective_layer_norm(self: nn.LayerNorm, x: Tensor) -> Tensor:
    return _layer_norm(self, x, detach=True)


def _effective_layer_norm_with_parameters(self: nn.LayerNorm, x: Tensor) -> Tensor:
    return _layer_norm(self, x, detach=False)


def _effective_gelu(self: nn.Module, x: Tensor) -> Tensor:
    return frozen_gate_gelu(x, "none")


def _effective_gelu_tanh(self: nn.Module, x: Tensor) -> Tensor:
    return frozen_gate_gelu(x, "tanh")


def _effective_quick_gelu(self: nn.Module, x: Tensor) -> Tensor:
    return frozen_gate_quick_gelu(x)


def _qkv(self: nn.Linear, x: Tensor, detach: bool) -> Tensor:
    weight, bias = _parameter(self.weight, detach), _parameter(self.bias, detach)
    assert weight is not None
    return value_only_qkv(x, weight, bias, 2 * self.out_features // 3)


def _effective_qkv(self: nn.Linear, x: Tensor) -> Tensor:
    return _qkv(self, x, detach=True)


def _effective_qkv_with_parameters(self: nn.Linear, x: Tensor) -> Tensor:
    return _qkv(self, x, detach=False)


def _value_only_attention_forward(attention: nn.Module) -> Callable[..., Any]:
    """``attention``'s current forward, run with :class:`ValueOnlyAttentionMode` active.

    The mode is entered by the module's own forward, not around the caller's block: a forward
    recomputed during backward (gradient checkpointing) takes the same route as the original.
    """
    previous = attention.forward

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with ValueOnlyAttentionMode():
            return previous(*args, **kwargs)

    return forward


def _gelu_forward(module: nn.Module) -> Callable[..., Tensor]:
    if type(module) is QuickGELU:
        return _effective_quick_gelu
    if type(module) is GELUTanh or getattr(module, "approximate", "none") == "tanh":
        return _effective_gelu_tanh
    return _effective_gelu


def _apply(model: nn.Module, restorer: _Restorer, parameter_gradients: bool) -> None:
    layer_norm = (
        _effective_layer_norm_with_parameters if parameter_gradients else _effective_layer_norm
    )
    qkv_projection = _effective_qkv_with_parameters if parameter_gradients else _effective_qkv
    for module in model.modules():
        kind = type(module)
        if kind in _LAYER_NORMS:
            restorer.override_forward(module, layer_norm)
        elif kind in _GELUS:
            restorer.override_forward(module, _gelu_forward(module))
        elif kind in _ATTENTIONS:
            # q and k (after their norms) and the optional sigmoid gate's logits become constants,
            # so the qkv projection's input gradient only needs its value rows
            for part in (module.q_norm, module.k_norm, getattr(module, "gate", None)):
                if isinstance(part, nn.Module):
                    restorer.detach_output(part)
            qkv = module.qkv
            assert isinstance(qkv, nn.Linear)  # checked by _problem_with_known
            restorer.override_forward(qkv, qkv_projection)
            # the fused kernel then sees constant q and k: give it the value-only backward
            restorer.override_forward(module, _value_only_attention_forward(module))


@contextlib.contextmanager
def effective_mode(
    model: nn.Module,
    affine_modules: Sequence[type[nn.Module]] = (),
    parameter_gradients: bool = False,
) -> Iterator[nn.Module]:
    """Put ``model`` into DAVE's effective (frozen-operator) mode for the duration of a block.

    Forward values are unchanged; gradients are those of the effective transformation ``L(X)``.
    The mode is per instance, can be nested, and is undone on exit even when the block raises.
    The model's train/eval mode is not touched: call ``model.eval()`` yourself for attribution.

    Args:
        model: A timm ``VisionTransformer`` (vit_*, deit_*, deit3_*, DINO ViTs) or any module
            assembled from the supported modules, e.g. a LightningModule holding one.
        affine_modules: Extra module classes the caller vouches for as affine (for example a
            custom input normalisation); they are left as they are.
        parameter_gradients: By default the weights of the overridden LayerNorms and qkv
            projections are used detached, so they get no gradient: custom autograd functions
            cannot tell that only the input gradient is wanted, and would otherwise compute
            weight gradients nobody reads. ``True`` keeps them (slower backward).

    Yields:
        The same ``model``.

    Raises:
        UnsupportedModelError: When ``model`` holds a module whose effective form is unknown
            (another attention class, RMSNorm, SwiGLU, BatchNorm, attention pooling, ...). The
            model is left untouched.

    Example:
        >>> import torch
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> model = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=1,
        ...                           num_heads=2, num_classes=3).eval()
        >>> x = torch.randn(2, 3, 16, 16)
        >>> with effective_mode(model):
        ...     inside = model(x)
        >>> torch.equal(inside, model(x))
        True
    """
    check_supported(model, affine_modules)
    restorer = _Restorer()
    try:
        _apply(model, restorer, parameter_gradients)
        yield model
    finally:
        restorer.restore_all()
