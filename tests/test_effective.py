"""Step I: effective mode against closed forms, an explicit reference, and its reversibility."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Attention, RmsNorm, SwiGLUPacked
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import ParallelScalingBlock, ResPostBlock, VisionTransformer
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from dave_lightning import UnsupportedModelError, effective_mode
from dave_lightning._value_only_attention import ValueOnlyAttentionMode
from tests.helpers import DtypeConversions, ModelState, tiny_vit

DOUBLE = torch.float64

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "vit-token": {},
    "avg-pool-fc-norm": {"global_pool": "avg"},
    "avgmax-pool": {"global_pool": "avgmax"},
    "max-pool": {"global_pool": "max"},
    "qk-norm-layerscale-registers": {"qk_norm": True, "init_values": 0.1, "reg_tokens": 2},
    "deit3-like-tanh-gelu": {
        "act_layer": "gelu_tanh",
        "no_embed_class": True,
        "init_values": 1e-2,
    },
    "no-class-token": {"class_token": False, "global_pool": "avg"},
    "quick-gelu-pre-norm": {"act_layer": "quick_gelu", "pre_norm": True},
    "scale-norms": {
        "scale_attn_norm": True,
        "scale_mlp_norm": True,
        "embed_norm_layer": nn.LayerNorm,
    },
    "res-post-block": {"block_fn": ResPostBlock},
    "non-square": {"img_size": (32, 48)},
    "dynamic-img-size": {"dynamic_img_size": True},
}


def _zero_affine_offsets(model: nn.Module) -> nn.Module:
    """Zero biases, position embeddings and tokens: the frozen network becomes homogeneous."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("bias", "pos_embed", "cls_token", "reg_token", "dist_token"):
                parameter.zero_()
            elif leaf == "weight" and parameter.dim() == 1:
                parameter.uniform_(0.5, 1.5)  # make norm scales non-trivial
    return model


def _completeness_error(model: nn.Module, x: torch.Tensor, **forward_kwargs: Any) -> float:
    x = x.clone().requires_grad_(True)
    with effective_mode(model):
        logits = model(x, **forward_kwargs)
        worst = 0.0
        for c in range(logits.shape[1]):
            (grad,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)
            residual = (grad * x).sum(dim=(1, 2, 3)) - logits[:, c]
            worst = max(worst, float((residual.abs().max() / logits.abs().max()).detach()))
    return worst


def _with_gated_attention(model: VisionTransformer) -> VisionTransformer:
    for block in model.blocks:
        block.attn = Attention(32, num_heads=2, qkv_bias=True, gated=True)
    return model


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_completeness_with_gated_attention(fused: bool) -> None:
    torch.manual_seed(0)
    model = _with_gated_attention(tiny_vit())
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
    model = _zero_affine_offsets(model).double().eval()
    assert _completeness_error(model, _input_for(model)) < 1e-10


def _input_for(model: VisionTransformer, batch: int = 2) -> torch.Tensor:
    height, width = model.patch_embed.img_size
    if model.dynamic_img_size:
        height, width = height, width + 16  # a size the model was not built for
    return torch.randn(batch, 3, height, width, dtype=DOUBLE)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_completeness_identity(name: str, fused: bool) -> None:
    torch.manual_seed(0)
    model = _zero_affine_offsets(tiny_vit(fused=fused, **CONFIGURATIONS[name])).double().eval()
    assert _completeness_error(model, _input_for(model)) < 1e-10


def test_completeness_fails_for_the_plain_gradient() -> None:
    """Guards the test above: without effective mode the identity does not hold."""
    torch.manual_seed(0)
    model = _zero_affine_offsets(tiny_vit()).double().eval()
    x = _input_for(model).requires_grad_(True)
    logit = model(x)[:, 1]
    (grad,) = torch.autograd.grad(logit.sum(), x)
    residual = ((grad * x).sum(dim=(1, 2, 3)) - logit).detach()
    assert float(residual.abs().max() / logit.detach().abs().max()) > 1e-3


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("mask_kind", ["causal", "bool-mask", "additive-mask"])
def test_completeness_with_attention_masks(fused: bool, mask_kind: str) -> None:
    torch.manual_seed(0)
    model = _zero_affine_offsets(tiny_vit(fused=fused)).double().eval()
    tokens = model.patch_embed.num_patches + 1
    kwargs: dict[str, Any] = {"is_causal": True}
    if mask_kind != "causal":
        keep = torch.rand(tokens, tokens) > 0.3
        keep |= torch.eye(tokens, dtype=torch.bool)
        mask = (
            keep
            if mask_kind == "bool-mask"
            else torch.zeros(tokens, tokens, dtype=DOUBLE).masked_fill(~keep, -1e4)
        )
        kwargs = {"attn_mask": mask}
    assert _completeness_error(model, _input_for(model), **kwargs) < 1e-10


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_completeness_distilled_deit(fused: bool) -> None:
    torch.manual_seed(0)
    model = tiny_vit(architecture=VisionTransformerDistilled, num_classes=4, fused=fused)
    model = _zero_affine_offsets(model).double().eval()
    assert _completeness_error(model, torch.randn(2, 3, 32, 32, dtype=DOUBLE)) < 1e-10


@pytest.mark.parametrize(
    "name",
    [
        "vit_tiny_patch16_224",
        "deit_tiny_patch16_224",
        "deit3_small_patch16_224",
        "vit_small_patch16_224.dino",
        "vit_small_patch14_dinov2",
    ],
)
def test_timm_registry_families_are_supported(name: str) -> None:
    model = timm.create_model(
        name, pretrained=False, img_size=32, patch_size=8, depth=1, num_classes=3
    )
    model = _zero_affine_offsets(model).double().eval()
    assert _completeness_error(model, torch.randn(1, 3, 32, 32, dtype=DOUBLE)) < 1e-10


# --- an explicit reference: a hand-written ViT forward with the frozen factors detached ---------


def _reference_layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    inverse_std = 1.0 / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps)
    return (x - mean) * inverse_std.detach() * norm.weight + norm.bias


def _reference_attention(x: torch.Tensor, attn: Attention) -> torch.Tensor:
    b, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) * attn.head_dim**-0.5
    weights = scores.softmax(dim=-1).detach()
    return attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def _reference_forward(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    tokens = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    tokens = (
        torch.cat([model.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + model.pos_embed
    )
    for block in model.blocks:
        tokens = tokens + _reference_attention(
            _reference_layer_norm(tokens, block.norm1), block.attn
        )
        hidden = block.mlp.fc1(_reference_layer_norm(tokens, block.norm2))
        gate = 0.5 * (1 + torch.erf(hidden / 2**0.5))
        tokens = tokens + block.mlp.fc2(hidden * gate.detach())
    return model.head(_reference_layer_norm(tokens, model.norm)[:, 0])


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_effective_gradient_equals_an_explicit_detached_reference(fused: bool) -> None:
    torch.manual_seed(0)
    model = tiny_vit(fused=fused).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))  # non-zero biases, tokens, positions
    x = torch.randn(2, 3, 32, 32, dtype=DOUBLE)
    target = torch.tensor([1, 3])

    leaf = x.clone().requires_grad_(True)
    reference_logits = _reference_forward(model, leaf)
    torch.testing.assert_close(reference_logits, model(x))
    (expected,) = torch.autograd.grad(reference_logits.gather(1, target[:, None]).sum(), leaf)

    leaf = x.clone().requires_grad_(True)
    with effective_mode(model):
        (got,) = torch.autograd.grad(model(leaf).gather(1, target[:, None]).sum(), leaf)
    torch.testing.assert_close(got, expected)


# --- forward unchanged, per instance, reversible ---------------------------------------------


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_forward_values_are_unchanged(fused: bool) -> None:
    torch.manual_seed(0)
    model = tiny_vit(fused=fused, qk_norm=True, init_values=0.1).eval()
    x = torch.randn(3, 3, 32, 32)
    with effective_mode(model):
        inside = model(x)
    assert torch.equal(inside, model(x))


def _ordinary_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[:, 0].sum(), leaf)
    return grad


def test_nothing_is_left_after_exit_and_after_the_body_raises() -> None:
    torch.manual_seed(0)
    model = tiny_vit(qk_norm=True).eval()
    x = torch.randn(2, 3, 32, 32)
    before, gradient_before = ModelState.capture(model), _ordinary_gradient(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    with effective_mode(model):
        assert before.differences(ModelState.capture(model))
    assert before.differences(ModelState.capture(model)) == []

    with pytest.raises(RuntimeError, match="boom"), effective_mode(model):
        raise RuntimeError("boom")
    assert before.differences(ModelState.capture(model)) == []
    assert torch.equal(_ordinary_gradient(model, x), gradient_before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_mode_is_per_instance_and_nests() -> None:
    torch.manual_seed(0)
    inside, outside = tiny_vit().eval(), tiny_vit().eval()
    outside.load_state_dict(inside.state_dict())
    x = torch.randn(1, 3, 32, 32)
    layer_norm_forward, gelu_forward = nn.LayerNorm.forward, nn.GELU.forward
    with effective_mode(inside):
        with effective_mode(inside):
            nested = _ordinary_gradient(inside, x)
        once = _ordinary_gradient(inside, x)
        assert not torch.allclose(_ordinary_gradient(outside, x), once)
    torch.testing.assert_close(nested, once)
    assert nn.LayerNorm.forward is layer_norm_forward
    assert nn.GELU.forward is gelu_forward
    torch.testing.assert_close(_ordinary_gradient(inside, x), _ordinary_gradient(outside, x))


def test_an_instance_forward_set_by_someone_else_is_restored() -> None:
    model = tiny_vit().eval()
    custom: Callable[[torch.Tensor], torch.Tensor] = lambda x: F.layer_norm(x, (32,))  # noqa: E731
    model.norm.forward = custom
    with effective_mode(model):
        assert model.norm.forward is not custom
    assert model.norm.forward is custom


# --- unsupported models ----------------------------------------------------------------------


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class _MyAttention(Attention):
    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return super().forward(x, **kwargs)


def _with_attention_subclass() -> VisionTransformer:
    model = tiny_vit()
    model.blocks[0].attn = _MyAttention(32, num_heads=2)
    return model


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25


UNSUPPORTED: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "rms-norm": (lambda: tiny_vit(norm_layer=RmsNorm), r"'norm'.*RmsNorm"),
    "swiglu": (lambda: tiny_vit(mlp_layer=SwiGLUPacked), r"'blocks.0.mlp'.*GluMlp"),
    "batch-norm-stem": (lambda: nn.Sequential(nn.BatchNorm2d(3), tiny_vit()), r"'0'.*BatchNorm2d"),
    "attention-pool": (
        lambda: tiny_vit(global_pool="map"),
        r"global_pool='map'.*\n.*AttentionPoolLatent",
    ),
    "diff-attention": (lambda: tiny_vit(attn_layer="diff"), r"'blocks.0.attn'.*DiffAttention"),
    "parallel-block": (lambda: tiny_vit(block_fn=ParallelScalingBlock), r"ParallelScalingBlock"),
    "attention-subclass": (_with_attention_subclass, r"'blocks.0.attn'.*_MyAttention subclasses"),
    "unknown-leaf": (
        lambda: nn.Sequential(_Square(), tiny_vit()),
        r"'0'.*_Square is a leaf module",
    ),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_models_raise_and_stay_untouched(name: str) -> None:
    build, pattern = UNSUPPORTED[name]
    model = build()
    before = ModelState.capture(model)
    with pytest.raises(UnsupportedModelError, match=pattern) as caught, effective_mode(model):
        pass
    assert "Supported:" in str(caught.value)
    assert "nn.LayerNorm, timm.LayerNorm" in str(caught.value)
    assert before.differences(ModelState.capture(model)) == []


def test_user_vouched_affine_modules_and_ignored_members_are_accepted() -> None:
    torch.manual_seed(0)
    model = _zero_affine_offsets(nn.Sequential(_Normalize(), tiny_vit())).double().eval()
    with pytest.raises(UnsupportedModelError, match="_Normalize"), effective_mode(model):
        pass
    model.loss = nn.CrossEntropyLoss()  # losses held beside the network are not part of forward
    with effective_mode(model, affine_modules=(_Normalize,)):
        pass


def test_parameter_gradients_are_skipped_by_default_and_kept_on_request() -> None:
    torch.manual_seed(0)
    model = tiny_vit().double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=DOUBLE, requires_grad=True)
    with effective_mode(model):
        model(x)[:, 0].sum().backward()
    assert model.blocks[0].norm1.weight.grad is None
    assert model.blocks[0].attn.qkv.weight.grad is None
    assert model.blocks[0].mlp.fc1.weight.grad is not None  # plain modules are left as they are
    effective_input_gradient = x.grad.clone()
    model.zero_grad(set_to_none=True)
    x.grad = None
    with effective_mode(model, parameter_gradients=True):
        model(x)[:, 0].sum().backward()
    torch.testing.assert_close(x.grad, effective_input_gradient)
    assert model.blocks[0].norm1.weight.grad is not None
    assert model.blocks[0].attn.qkv.weight.grad is not None


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_forward_under_autocast_then_backward_outside_it(fused: bool) -> None:
    """The usual mixed-precision pattern: autocast around the forward, gradient taken after."""
    torch.manual_seed(0)
    model = tiny_vit(fused=fused).eval()
    x = torch.randn(2, 3, 32, 32)
    with effective_mode(model):
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logit = model(leaf)[:, 1].sum()
        (low_precision,) = torch.autograd.grad(logit.float(), leaf)
        leaf = x.clone().requires_grad_(True)
        (full_precision,) = torch.autograd.grad(model(leaf)[:, 1].sum(), leaf)
    assert low_precision.dtype == torch.float32
    cosine = F.cosine_similarity(low_precision.flatten(), full_precision.flatten(), dim=0)
    assert float(cosine) > 0.95


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_under_autocast_effective_mode_converts_no_more_than_the_plain_passes(fused: bool) -> None:
    """No float32 round trips of its own under bf16 autocast (issue 16); forward unchanged."""
    torch.manual_seed(0)
    model = tiny_vit(fused=fused, qk_norm=True).eval()
    x = torch.randn(2, 3, 32, 32)
    counts, outputs = [], []
    for effective in (False, True):
        leaf = x.clone().requires_grad_(True)
        with contextlib.ExitStack() as stack:
            if effective:
                stack.enter_context(effective_mode(model))
            with DtypeConversions() as counter:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = model(leaf)
                torch.autograd.grad(logits[:, 1].sum(), leaf)
        counts.append(counter.count)
        outputs.append(logits)
    assert torch.equal(outputs[1], outputs[0])
    assert counts[1] <= counts[0]


def test_the_attention_mode_is_active_only_during_each_attention_forward() -> None:
    """What the module docstring says is scoped how: no mode outside an attention's forward."""
    torch.manual_seed(0)
    model = tiny_vit().eval()
    seen: dict[str, list[str]] = {}

    def record(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            stack = _get_current_function_mode_stack()
            seen.setdefault(name, []).append(",".join(type(mode).__name__ for mode in stack))

        return hook

    model.blocks[0].attn.qkv.register_forward_hook(record("inside attention"))
    model.blocks[0].norm2.register_forward_hook(record("outside attention"))
    with effective_mode(model):
        assert _get_current_function_mode_stack() == []
        model(torch.randn(1, 3, 32, 32, requires_grad=True))
        assert _get_current_function_mode_stack() == []
    assert seen == {
        "inside attention": [ValueOnlyAttentionMode.__name__],
        "outside attention": [""],
    }
