"""The value-only attention backward against the library's own gradient, and where it applies."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from dave_lightning import _value_only_attention
from dave_lightning._value_only_attention import ValueOnlyAttentionMode, value_only_attention
from dave_lightning.effective import effective_mode
from tests.helpers import tiny_vit

DOUBLE = torch.float64
BATCH, HEADS, QUERIES, KEYS, WIDTH = 3, 2, 5, 7, 4


def _qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(BATCH, HEADS, QUERIES, WIDTH, generator=generator, dtype=DOUBLE)
    k = torch.randn(BATCH, HEADS, KEYS, WIDTH, generator=generator, dtype=DOUBLE)
    v = torch.randn(BATCH, HEADS, KEYS, WIDTH + 1, generator=generator, dtype=DOUBLE)
    return q, k, v


def _masks() -> dict[str, dict[str, Any]]:
    generator = torch.Generator().manual_seed(1)
    keep = torch.rand(QUERIES, KEYS, generator=generator) > 0.4
    keep[:, 0] = True  # every query sees at least one key
    per_image = torch.rand(BATCH, 1, QUERIES, KEYS, generator=generator) > 0.4
    per_image[..., 0] = True
    return {
        "none": {},
        "scale": {"scale": 0.3},
        "bool-shared": {"attn_mask": keep},
        "bool-per-image": {"attn_mask": per_image},
        "additive": {"attn_mask": torch.randn(QUERIES, KEYS, generator=generator, dtype=DOUBLE)},
        "causal": {"is_causal": True},
    }


def _library_value_gradient(q, k, v, grad_output, **options) -> torch.Tensor:
    leaf = v.clone().requires_grad_(True)
    out = F.scaled_dot_product_attention(q, k, leaf, **options)
    return torch.autograd.grad(out, leaf, grad_output)[0]


@pytest.mark.parametrize("case", list(_masks()))
@pytest.mark.parametrize("slices", [False, True], ids=["whole", "sliced"])
def test_value_gradient_and_output_equal_the_library(case, slices, monkeypatch):
    options = _masks()[case]
    if slices:  # one image's attention matrix per backward slice
        monkeypatch.setattr(_value_only_attention, "_MAX_SCORES", HEADS * QUERIES * KEYS)
    q, k, v = _qkv()
    grad_output = torch.randn(BATCH, HEADS, QUERIES, WIDTH + 1, dtype=DOUBLE)
    leaf = v.clone().requires_grad_(True)
    out = value_only_attention(q, k, leaf, **options)
    (mine,) = torch.autograd.grad(out, leaf, grad_output)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, **options))
    torch.testing.assert_close(mine, _library_value_gradient(q, k, v, grad_output, **options))


def _rerouted(**options: Any) -> bool:
    q, k, v = (t.float() for t in _qkv())
    q.requires_grad_(options.pop("q_grad", False))
    v.requires_grad_(True)
    with ValueOnlyAttentionMode():
        out = F.scaled_dot_product_attention(q, k, v, **options)
    return out.grad_fn is not None and out.grad_fn.name() == "_ValueOnlyAttentionBackward"


def test_the_mode_reroutes_only_constant_queries_and_keys_without_dropout():
    assert _rerouted()
    assert _rerouted(attn_mask=torch.ones(QUERIES, KEYS, dtype=torch.bool))
    assert not _rerouted(q_grad=True)  # q's gradient is wanted: the library computes it
    assert not _rerouted(dropout_p=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _rerouted()  # under autocast too (bench_step1.py: 0.72-0.75x plain vs 0.96x)
    with torch.no_grad():
        q, k, v = _qkv()
        with ValueOnlyAttentionMode():
            assert F.scaled_dot_product_attention(q, k, v).grad_fn is None


def _attention_backward_names(model: torch.nn.Module, x: torch.Tensor) -> set[str]:
    """Names of the attention nodes in the backward graph of ``model(x)``."""
    visited: list[Any] = []  # keeps the node wrappers alive, so that their ids stay unique
    seen: set[int] = set()
    names: set[str] = set()
    pending = [model(x.requires_grad_(True)).sum().grad_fn]
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        visited.append(node)
        seen.add(id(node))
        names.add(node.name())
        pending.extend(next_node for next_node, _ in node.next_functions)
    return {name for name in names if "ttention" in name}


def _library_attention_outside_any_mode() -> bool:
    q, k, v = _qkv()
    out = F.scaled_dot_product_attention(q, k, v.requires_grad_(True))
    return out.grad_fn.name() != "_ValueOnlyAttentionBackward"


def test_effective_mode_uses_it_for_fused_attention_and_leaves_no_mode_behind():
    model = tiny_vit(fused=True).eval()
    x = torch.randn(1, 3, 32, 32)
    with effective_mode(model):
        assert _attention_backward_names(model, x.clone()) == {"_ValueOnlyAttentionBackward"}
    assert "_ValueOnlyAttentionBackward" not in _attention_backward_names(model, x.clone())
    assert _library_attention_outside_any_mode()
    with pytest.raises(RuntimeError, match="boom"), effective_mode(model):
        raise RuntimeError("boom")
    assert _library_attention_outside_any_mode()


def test_every_device_is_rerouted() -> None:
    """On today's main only CPU tensors were; ``meta`` stands in for any other device."""
    q, k, v = (torch.empty(BATCH, HEADS, QUERIES, WIDTH, device="meta") for _ in range(3))
    with ValueOnlyAttentionMode():
        out = F.scaled_dot_product_attention(q, k, v.requires_grad_(True))
    assert out.grad_fn.name() == "_ValueOnlyAttentionBackward"
    assert torch.autograd.grad(out.sum(), v)[0].shape == v.shape


def _bf16_case(case: str) -> dict[str, Any]:
    options = dict(_masks()[case])
    if (
        isinstance(options.get("attn_mask"), torch.Tensor)
        and options["attn_mask"].is_floating_point()
    ):
        options["attn_mask"] = options["attn_mask"].float()
    return options


@pytest.mark.parametrize("backward_inside", [True, False], ids=["inside", "outside"])
@pytest.mark.parametrize("case", list(_masks()))
def test_under_autocast_the_output_is_the_library_and_the_value_gradient_its_precision(
    case: str, backward_inside: bool
) -> None:
    """bf16 autocast on the CPU: forward bit for bit, dV in bf16 close to the library's dV."""
    options = _bf16_case(case)
    q, k, v = (t.to(torch.bfloat16) for t in _qkv())
    grad_output = torch.randn(BATCH, HEADS, QUERIES, WIDTH + 1, dtype=torch.bfloat16)
    gradients, outputs = [], []
    for attention in (F.scaled_dot_product_attention, value_only_attention):
        leaf = v.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attention(q, k, leaf, **options)
            if backward_inside:
                gradients.append(torch.autograd.grad(out, leaf, grad_output)[0])
        if not backward_inside:
            gradients.append(torch.autograd.grad(out, leaf, grad_output)[0])
        outputs.append(out)
    assert torch.equal(outputs[1], outputs[0])
    assert gradients[1].dtype == gradients[0].dtype == torch.bfloat16
    exact = _library_value_gradient(*(t.double() for t in (q, k, v, grad_output)), **_masks()[case])
    library_error = (gradients[0].double() - exact).abs().max()
    mine_error = (gradients[1].double() - exact).abs().max()
    assert mine_error <= 2 * library_error + 1e-2 * exact.abs().max()


@pytest.mark.cuda
@pytest.mark.parametrize("case", list(_masks()))
def test_on_cuda_the_value_gradient_equals_the_library_with_masks(case: str) -> None:
    options = {
        name: value.cuda().float()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
        else value.cuda()
        if isinstance(value, torch.Tensor)
        else value
        for name, value in _masks()[case].items()
    }
    q, k, v = (t.float().cuda() for t in _qkv())
    grad_output = torch.randn(BATCH, HEADS, QUERIES, WIDTH + 1, device="cuda")
    leaf = v.clone().requires_grad_(True)
    with ValueOnlyAttentionMode():
        out = F.scaled_dot_product_attention(q, k, leaf, **options)
    assert out.grad_fn.name() == "_ValueOnlyAttentionBackward"
    (mine,) = torch.autograd.grad(out, leaf, grad_output)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, **options))
    library = _library_value_gradient(q, k, v, grad_output, **options)
    torch.testing.assert_close(mine, library, atol=1e-5, rtol=1e-4)
