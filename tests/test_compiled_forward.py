"""DAVE's opt-in compiled path (``compile=True``) against the eager one.

Each compiling test starts from an empty dynamo cache and checks that graphs were compiled, so
none passes vacuously (dynamo falls back to eager silently once its recompile limit is hit).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from dave_lightning import DAVE, effective_mode
from dave_lightning.errors import BadInputError
from tests.helpers import ModelState, tiny_vit

TARGETS = [0, 3, 1]
# 3 images x 5 samples in passes of 4: three full passes and a last one of 3
OPTIONS: dict[str, Any] = {"num_samples": 5, "noise_alpha": 0.3, "max_batch_size": 4}


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _compiled_graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def _model(fused: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return tiny_vit(img_size=16, num_classes=4, fused=fused).eval()


def _images(count: int = 3) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_compile_must_be_a_bool() -> None:
    with pytest.raises(BadInputError, match=r"`compile`: expected True or False, received 'yes'"):
        DAVE(_model(), compile="yes")  # type: ignore[arg-type]


def test_compile_is_off_by_default() -> None:
    assert DAVE(_model()).compile is False


def test_effective_mode_traces_as_one_graph_without_breaks(fresh_dynamo: None) -> None:
    """Dynamo traces effective mode whole (it stopped on the ``functools.partial`` overrides).

    The explanation traces the forward and the custom autograd functions' backward, which had a
    data-dependent test (the GELU gate at 0) and a loop over batch slices (value-only attention).
    """
    model = _model(fused=True)
    with effective_mode(model):
        explanation = torch._dynamo.explain(model)(_images().requires_grad_(True))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False])
def test_compiled_maps_equal_eager_maps(fused: bool, fresh_dynamo: None) -> None:
    """Each pass agrees to float rounding, so the mean aggregation's maps do.

    The robust aggregation's trimming is discontinuous: an element within rounding of its
    threshold may flip, so its maps must agree everywhere but at a few elements.
    """
    model = _model(fused)
    for aggregation in ("mean", "robust"):
        options = {"aggregation": aggregation, **OPTIONS}
        eager = DAVE(model, **options).attribute(_images(), TARGETS, keep_channels=True)
        compiled = DAVE(model, compile=True, **options).attribute(
            _images(), TARGETS, keep_channels=True
        )
        tolerance = 1e-6 * float(eager.abs().max())
        if aggregation == "mean":
            torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=tolerance)
        else:
            close = torch.isclose(compiled, eager, rtol=1e-5, atol=tolerance)
            assert float(close.float().mean()) > 0.99
    assert _compiled_graphs() >= 1


@pytest.mark.slow
def test_compiled_maps_are_reproducible_and_compile_once(fresh_dynamo: None) -> None:
    """Same seed, same maps; more images (other pass sizes) reuse the graph."""
    dave = DAVE(_model(), compile=True, **OPTIONS)
    first = dave.attribute(_images(), TARGETS)
    graphs = _compiled_graphs()
    again = dave.attribute(_images(), TARGETS)
    dave.attribute(_images(6), [0, 1, 2, 3, 0, 1])  # 30 slots: passes of 4 and a last of 2
    assert graphs >= 1
    assert _compiled_graphs() == graphs
    torch.testing.assert_close(again, first, atol=0, rtol=0)


@pytest.mark.slow
def test_compiled_path_leaves_the_model_as_it_was(fresh_dynamo: None) -> None:
    model = _model()
    model.train()
    model.blocks[0].eval()
    model.head.weight.grad = torch.ones_like(model.head.weight)
    model.patch_embed.proj.weight.requires_grad_(False)
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    objects = dict(model.named_parameters())
    before = ModelState.capture(model)
    rng = torch.get_rng_state()

    DAVE(model, compile=True, **OPTIONS).attribute(_images(), TARGETS)

    assert dict(model.named_parameters()) == objects  # the same Parameter objects are back
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())

    assert _compiled_graphs() >= 1
    assert torch.equal(torch.get_rng_state(), rng)
    assert before.differences(ModelState.capture(model)) == []
    assert not hasattr(model, "_orig_mod")
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "head.weight")
    assert not model.patch_embed.proj.weight.requires_grad
    assert all(torch.equal(p, parameters[name]) for name, p in model.named_parameters())
    # the graph traced in effective mode is not reused for the plain model (dynamo's guards on
    # each module's forward; the eager backend suffices to show it)
    plain_compiled = torch.compile(model.eval(), backend="eager")
    leaf = _images().requires_grad_(True)
    (compiled_after,) = torch.autograd.grad(plain_compiled(leaf)[:, 0].sum(), leaf)
    leaf = _images().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(leaf)[:, 0].sum(), leaf)
    torch.testing.assert_close(compiled_after, plain)


@pytest.mark.slow
def test_compiled_path_with_gradient_checkpointing(
    fresh_dynamo: None, checkpointed_blocks: list[int]
) -> None:
    model = _model()
    eager = DAVE(model, **OPTIONS).attribute(_images(), TARGETS)
    model.set_grad_checkpointing(True)
    compiled = DAVE(model, compile=True, **OPTIONS).attribute(_images(), TARGETS)
    assert checkpointed_blocks
    assert _compiled_graphs() >= 1
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6 * float(eager.abs().max()))


@pytest.mark.slow
def test_compiled_path_under_bf16_autocast(fresh_dynamo: None) -> None:
    """What the monitor does on a GPU with ``compile=True``: one graph, bf16's own precision.

    Compilation may fuse and round bf16 operations differently, so the maps must agree with
    eager bf16 well within bf16's own distance from float32. Dynamo no longer warns about tracing
    through the cached LayerNorm dtype probe.
    """
    model = _model()
    options = {**OPTIONS, "aggregation": "mean"}
    float32 = DAVE(model, **options).attribute(_images(), TARGETS, keep_channels=True)
    options["autocast_dtype"] = torch.bfloat16
    eager = DAVE(model, **options).attribute(_images(), TARGETS, keep_channels=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = DAVE(model, compile=True, **options).attribute(
            _images(), TARGETS, keep_channels=True
        )
    assert not [w for w in caught if "cache" in str(w.message)]
    assert _compiled_graphs() == 1
    bf16_error = float((eager - float32).abs().max())
    assert bf16_error > 0  # autocast really ran
    assert float((compiled - eager).abs().max()) <= 0.5 * bf16_error
