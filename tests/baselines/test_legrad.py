"""LeGrad against an explicit float64 computation from each block's weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import ParallelScalingBlock, VisionTransformer
from torch import Tensor, nn

from dave_lightning.baselines import LeGrad
from dave_lightning.errors import BadInputError, UnsupportedModelError
from tests.baselines.helpers import random_images, randomise_embeddings
from tests.helpers import ModelState, tiny_vit


def layer_norm(module: nn.Module, x: Tensor) -> Tensor:
    if isinstance(module, nn.Identity):
        return x
    return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)


def explicit_block(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One pre-norm block from its weights; returns the output and the attention map."""
    attention = block.attn
    n, tokens, width = x.shape
    heads, head_dim = attention.num_heads, attention.head_dim
    h = layer_norm(block.norm1, x)
    qkv = F.linear(h, attention.qkv.weight, attention.qkv.bias)
    q, k, v = qkv.reshape(n, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    attention_map = torch.softmax(q @ k.transpose(-2, -1) * head_dim**-0.5, dim=-1)
    mixed = (attention_map @ v).transpose(1, 2).reshape(n, tokens, width)
    x = x + F.linear(mixed, attention.proj.weight, attention.proj.bias)
    h = layer_norm(block.norm2, x)
    hidden = F.gelu(F.linear(h, block.mlp.fc1.weight, block.mlp.fc1.bias))
    return x + F.linear(hidden, block.mlp.fc2.weight, block.mlp.fc2.bias), attention_map


def explicit_logits(model: VisionTransformer, tokens: Tensor) -> Tensor:
    """Final norm, pooling (class token or patch mean), fc_norm and head, from their weights."""
    tokens = layer_norm(model.norm, tokens)
    if model.global_pool == "token":
        pooled = tokens[:, 0]
    else:
        pooled = tokens[:, model.num_prefix_tokens :].mean(dim=1)
    pooled = layer_norm(model.fc_norm, pooled)
    return F.linear(pooled, model.head.weight, model.head.bias)


def explicit_legrad(
    model: VisionTransformer, images: Tensor, target: Tensor, logits_of=explicit_logits
) -> Tensor:
    """LeGrad with the whole graph kept: no detached inputs, no leaves made of the maps."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    maps, outputs = [], []
    for block in model.blocks:
        x, attention_map = explicit_block(block, x)
        maps.append(attention_map)
        outputs.append(x)
    relevance = 0
    for attention_map, tokens in zip(maps, outputs, strict=True):
        score = logits_of(model, tokens).gather(1, target[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, attention_map, retain_graph=True)
        relevance = relevance + gradient.clamp(min=0).mean(dim=(1, 2))[:, model.num_prefix_tokens :]
    height, width = images.shape[-2:]
    patch = model.patch_embed.patch_size
    grid = relevance.reshape(len(images), 1, height // patch[0], width // patch[1])
    return F.interpolate(grid, scale_factor=patch, mode="bilinear")[:, 0]


CONFIGS: dict[str, dict[str, Any]] = {
    "one block": {"depth": 1},
    "two blocks, register tokens": {"depth": 2, "reg_tokens": 2},
    "average pooling": {"depth": 2, "global_pool": "avg"},
    "no class token": {"depth": 2, "class_token": False, "global_pool": "avg"},
    "non-square": {"depth": 1, "img_size": (24, 40)},
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_equals_the_explicit_computation(config: str) -> None:
    model = randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64, **CONFIGS[config])).eval()
    height, width = model.patch_embed.img_size
    images = random_images(2, 3, height, width, dtype=torch.float64)
    target = torch.tensor([1, 4])
    with torch.no_grad():
        assert torch.allclose(
            explicit_logits(model, explicit_forward(model, images)), model(images)
        )
    expected = explicit_legrad(model, images, target)
    actual = LeGrad(model).attribute(images, target)
    assert float(expected.std()) > 0.1 * float(expected.abs().max()) > 0, "a vacuous reference"
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9 * float(expected.abs().max()))


def explicit_forward(model: VisionTransformer, images: Tensor) -> Tensor:
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    for block in model.blocks:
        x, _ = explicit_block(block, x)
    return x


def test_several_targets_and_batch_splits_agree() -> None:
    model = randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64)).eval()
    images = random_images(3, 3, 32, 32, dtype=torch.float64)
    targets = torch.tensor([[0, 2], [1, 1], [4, 3]])
    maps = LeGrad(model, max_batch_size=2).attribute(images, targets)
    assert maps.shape == (3, 2, 32, 32)
    for k in range(2):
        torch.testing.assert_close(maps[:, k], explicit_legrad(model, images, targets[:, k]))
    # another batch split may sum in another order (BLAS blocking differs between CPUs)
    unsplit = LeGrad(model).attribute(images, targets, keep_channels=True)
    assert unsplit.shape == (3, 2, 1, 32, 32)  # channel-free: one map
    torch.testing.assert_close(unsplit[:, :, 0], maps)


def test_fused_attention_models_give_the_same_maps_and_keep_their_flags() -> None:
    model = randomise_embeddings(tiny_vit(seed=0, dtype=torch.float64)).eval()
    images = random_images(2, 3, 32, 32, dtype=torch.float64)
    unfused = LeGrad(model).attribute(images, 3)
    for module in model.modules():
        if isinstance(module, Attention):
            module.fused_attn = True
    before = ModelState.capture(model)
    torch.testing.assert_close(LeGrad(model).attribute(images, 3), unfused)
    assert before.differences(ModelState.capture(model)) == []
    assert all(m.fused_attn for m in model.modules() if isinstance(m, Attention))


def test_dynamic_padding_upsamples_the_padded_frame_then_crops() -> None:
    model = tiny_vit(seed=0, dynamic_img_size=True, dynamic_img_pad=True).eval()
    images = random_images(1, 3, 36, 28)
    padded = F.pad(images, (0, 4, 0, 4))  # what timm does: zeros at the bottom and right
    maps = LeGrad(model).attribute(images, 2)
    assert maps.shape == (1, 36, 28)
    torch.testing.assert_close(maps, LeGrad(model).attribute(padded, 2)[:, :36, :28])


def test_min_max_scales_each_map_to_the_unit_interval() -> None:
    model = randomise_embeddings(tiny_vit(seed=0)).eval()
    images = random_images(2, 3, 32, 32)
    raw = LeGrad(model).attribute(images, torch.tensor([[0, 1], [2, 3]]))
    scaled = LeGrad(model, min_max=True).attribute(images, torch.tensor([[0, 1], [2, 3]]))
    low = raw.amin(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(scaled, (raw - low) / (raw.amax(dim=(-2, -1), keepdim=True) - low))
    assert torch.equal(scaled.amax(dim=(-2, -1)), torch.ones(2, 2))


def test_gradient_checkpointing_is_paused_and_restored() -> None:
    model = randomise_embeddings(tiny_vit(seed=0)).eval()
    images = random_images(2, 3, 32, 32)
    expected = LeGrad(model).attribute(images, 1)
    model.set_grad_checkpointing(True)
    torch.testing.assert_close(LeGrad(model).attribute(images, 1), expected)
    assert model.grad_checkpointing is True


def test_distilled_deit_uses_both_heads() -> None:
    model = tiny_vit(architecture=VisionTransformerDistilled)
    model = randomise_embeddings(model).double().eval()
    images = random_images(2, 3, 32, 32, seed=3, dtype=torch.float64)
    target = torch.tensor([0, 4])

    def both_heads(model: nn.Module, tokens: Tensor) -> Tensor:
        tokens = layer_norm(model.norm, tokens)
        head = F.linear(tokens[:, 0], model.head.weight, model.head.bias)
        distilled = F.linear(tokens[:, 1], model.head_dist.weight, model.head_dist.bias)
        return (head + distilled) / 2

    def class_head_only(model: nn.Module, tokens: Tensor) -> Tensor:
        tokens = layer_norm(model.norm, tokens)
        return F.linear(tokens[:, 0], model.head.weight, model.head.bias)

    with torch.no_grad():
        x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
        for block in model.blocks:
            x = explicit_block(block, x)[0]
        torch.testing.assert_close(both_heads(model, x), model(images))
    maps = LeGrad(model).attribute(images, target)
    torch.testing.assert_close(maps, explicit_legrad(model, images, target, both_heads))
    assert not torch.allclose(maps, explicit_legrad(model, images, target, class_head_only))


class Wrapper(nn.Module):
    def __init__(self, model: nn.Module, factor: float = 1.0) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * self.factor


def test_a_module_holding_the_vit_is_explained_through_it() -> None:
    model = randomise_embeddings(tiny_vit(seed=0)).eval()
    images = random_images(2, 3, 32, 32)
    torch.testing.assert_close(
        LeGrad(Wrapper(model)).attribute(images, 1), LeGrad(model).attribute(images, 1)
    )


class SkipsAttnDrop(Attention):
    """An attention that never calls ``attn_drop``: its map cannot be captured."""

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False
    ) -> Tensor:
        n, tokens, width = x.shape
        qkv = (
            self.qkv(x).reshape(n, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )
        mixed = F.scaled_dot_product_attention(*qkv.unbind(0))
        return self.proj(mixed.transpose(1, 2).reshape(n, tokens, width))


def skipping_model() -> nn.Module:
    model = tiny_vit(seed=0)
    attention = SkipsAttnDrop(32, num_heads=2, qkv_bias=True)
    attention.load_state_dict(model.blocks[0].attn.state_dict())
    model.blocks[0].attn = attention
    return model


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5)), "holds 0"),
        (lambda: nn.ModuleList([tiny_vit(seed=0), tiny_vit(seed=0)]), "holds 2"),
        (lambda: tiny_vit(seed=0, global_pool="map"), "attention pooling"),
        (lambda: tiny_vit(seed=0, block_fn=ParallelScalingBlock), "block 0 .ParallelScalingBlock."),
    ],
)
def test_unsupported_models_are_refused_at_construction(build: Any, match: str) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        LeGrad(build())


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (skipping_model, "block 0 produced 0 attention maps"),
        (lambda: Wrapper(tiny_vit(seed=0), factor=2.0), "is not its ViT's forward_head"),
    ],
)
def test_models_legrad_cannot_follow_are_refused_at_the_call(build: Any, match: str) -> None:
    model = build().eval()
    images = random_images(1, 3, 32, 32)
    before = ModelState.capture(model)
    with pytest.raises(UnsupportedModelError, match=match):
        LeGrad(model).attribute(images, 0)
    assert before.differences(ModelState.capture(model)) == []


def test_bad_options_are_named() -> None:
    with pytest.raises(BadInputError, match="`min_max`: expected a bool"):
        LeGrad(tiny_vit(seed=0), min_max=1)
