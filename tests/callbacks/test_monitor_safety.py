"""Training survives a misbehaving attribution pass, and half-precision weights are left alone."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from dave_lightning.attributor import Attributor, Target
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._precision import float32_network
from dave_lightning.registry import _REGISTRY, register_attributor
from tests.callbacks.helpers import (
    FAST,
    MID_ACCUMULATION,
    Spy,
    TinyClassifier,
    assert_same,
    loaders,
    trainer,
    training_fingerprint,
)


class _Misbehaving(Attributor):
    """Does everything an attribution pass must not leave behind, then raises."""

    name = "misbehaving"

    def attribute(
        self,
        images: torch.Tensor,
        target: Target,
        *,
        keep_channels: bool = False,
        image_ids: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        random.random()
        np.random.rand()
        torch.rand(1)
        self.model.train()  # and its forward below draws dropout masks
        next(self.model.parameters()).requires_grad_(False)
        with torch.enable_grad():
            self.model(images).sum().backward()  # writes every other parameter's .grad
        raise RuntimeError("misbehaved (simulated)")

    def _attribute(
        self, images: torch.Tensor, targets: torch.Tensor, image_ids: list[int]
    ) -> torch.Tensor:
        raise NotImplementedError


@pytest.fixture
def misbehaving() -> Iterator[None]:
    register_attributor("misbehaving", _Misbehaving, overwrite=True)
    yield
    _REGISTRY.pop("misbehaving")


@pytest.mark.slow
def test_a_misbehaving_attributor_leaves_training_bit_for_bit_unchanged(
    tmp_path: Path, misbehaving: None
) -> None:
    without = training_fingerprint(tmp_path / "without", [], **MID_ACCUMULATION)
    monitor = AttributionMonitor(methods=["misbehaving"], **FAST)
    with pytest.warns(RuntimeWarning, match=r"misbehaved \(simulated\)\); .* training goes on"):
        with_monitor = training_fingerprint(tmp_path / "with", [monitor], **MID_ACCUMULATION)
    # it ran (and failed) at each of the 6 validations: the probe maps and the grid maps
    assert monitor.num_failures == 12
    assert with_monitor["after_each_validation"][1]["grad"][1] is not None  # live gradients
    assert_same(without, with_monitor)


@pytest.mark.slow
def test_bf16_true_weights_are_attributed_through_a_float32_copy(
    tmp_path: Path, spy: type[Spy]
) -> None:
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier(drop_rate=0.0)
    monitor = AttributionMonitor(methods=["spy"], metrics=["deletion_auc"], autocast=None, **FAST)
    run = trainer(tmp_path, [monitor], max_epochs=1, precision="bf16-true", logger=False)
    run.fit(model, *loaders())
    probe_calls = [call for call in spy.calls if min(call["ids"]) >= 0]
    assert probe_calls
    for call in probe_calls:
        assert call["parameter_dtypes"] == {torch.float32}
        assert call["images_dtype"] == torch.float32
        assert call["maps_dtype"] == torch.float32
        assert not call["autocast"]
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # put back
    held = run.optimizers[0].param_groups[0]["params"]
    assert all(p is q for p, q in zip(held, model.parameters(), strict=True))
    # normalised by the unperturbed score: >= 0, above 1 where removal raises the score
    assert 0 <= monitor.history[-1]["explain/spy/deletion_auc"] < 10


def test_float32_network_restores_the_originals_even_when_the_block_raises() -> None:
    layer = torch.nn.Linear(3, 3).to(torch.bfloat16)
    net = torch.nn.Sequential(layer, torch.nn.Linear(3, 3), layer)  # tied
    net[1].register_buffer("scale", torch.ones(3, dtype=torch.float16))
    before = [(name, t, t.clone()) for name, t in [*net.named_parameters(), *net.named_buffers()]]
    seen: list[bool] = []

    def inside() -> None:
        with float32_network(net), torch.no_grad():
            seen.append(net[0].weight is net[2].weight)  # still tied
            seen.append({t.dtype for t in [*net.parameters(), *net.buffers()]} == {torch.float32})
            net[0].weight.add_(1.0)  # writes the copy only
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        inside()
    assert seen == [True, True]
    after = dict([*net.named_parameters(), *net.named_buffers()])
    for name, original, value in before:
        assert after[name] is original, name
        assert torch.equal(original, value), name


@pytest.mark.slow
def test_bf16_true_weights_under_bf16_autocast_as_auto_gives_on_a_gpu(tmp_path: Path) -> None:
    """What ``autocast="auto"`` does on an A100-class GPU: the bf16 weights are used as they are."""
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier(drop_rate=0.0)
    monitor = AttributionMonitor(methods=["dave", "gradient"], autocast="bf16", **FAST)
    run = trainer(tmp_path, [monitor], max_epochs=1, precision="bf16-true", logger=False)
    run.fit(model, *loaders())
    assert monitor.num_failures == 0
    scores = monitor.history[-1]
    assert {f"explain/{m}/energy_pg" for m in ("dave", "gradient")} <= set(scores)
    assert all(math.isfinite(value) for value in scores.values())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
