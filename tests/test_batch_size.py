"""``max_batch_size="auto"``: the rule, and that DAVE, the monitor and the registry use it."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from dave_lightning import DAVE, BadInputError, _batch_size, get_attributor
from dave_lightning._batch_size import activation_bytes, auto_batch_size
from dave_lightning.callbacks import AttributionMonitor
from tests.helpers import tiny_vit

CPU = torch.device("cpu")


def _timm(name: str) -> nn.Module:
    """A timm model without weights (on the meta device: only its shape matters here)."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def test_activation_estimate_follows_the_formula_for_a_timm_vit() -> None:
    model = _timm("vit_small_patch16_224")
    tokens = 14 * 14 + 1
    expected = 12 * tokens * (16 * 384 + 2 * 6 * tokens) * 4
    assert activation_bytes(model, (3, 224, 224), torch.float32) == expected
    assert activation_bytes(model, (3, 224, 224), torch.bfloat16) == expected // 2
    wrapped = nn.Sequential(nn.Identity(), model)  # a module holding the ViT
    assert activation_bytes(wrapped, (3, 224, 224), torch.float32) == expected
    assert activation_bytes(nn.Linear(3, 3), (3, 224, 224), torch.float32) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("vit_tiny_patch16_224", 32), ("vit_small_patch16_224", 32), ("vit_base_patch16_224", 16)],
)
def test_cpu_rule_bounds_the_activations(
    monkeypatch: pytest.MonkeyPatch, name: str, expected: int
) -> None:
    monkeypatch.setattr(_batch_size, "_cpu_budget", lambda: _batch_size.CPU_BUDGET_BYTES)
    model = _timm(name)
    assert auto_batch_size(model, (3, 224, 224), CPU, torch.float32) == expected


def test_cpu_rule_at_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _timm("vit_small_patch16_224")
    monkeypatch.setattr(_batch_size, "_cpu_budget", lambda: 1)  # a tiny machine: one input
    assert auto_batch_size(model, (3, 224, 224), CPU, torch.float32) == 1
    monkeypatch.setattr(_batch_size, "_cpu_budget", lambda: 2**50)  # a huge one: the cap
    assert auto_batch_size(model, (3, 224, 224), CPU, torch.float32) == _batch_size.CPU_MAX
    assert auto_batch_size(nn.Linear(3, 3), (3, 8, 8), CPU, torch.float32) == 16  # unknown


def test_cuda_rule_uses_half_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _timm("vit_base_patch16_224")
    per_input = activation_bytes(model, (3, 224, 224), torch.bfloat16)
    assert per_input is not None
    cuda = torch.device("cuda", 0)
    for free, expected in ((per_input * 20, 10), (10**15, 256), (1, 1)):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, f=free: (f, 2 * f))
        assert auto_batch_size(model, (3, 224, 224), cuda, torch.bfloat16) == expected


def test_dave_defaults_to_auto_and_keeps_an_explicit_size() -> None:
    model = tiny_vit(img_size=16, num_classes=3)
    images = torch.randn(2, 3, 16, 16)
    auto = DAVE(model, num_samples=2)
    assert auto.auto_batch_size
    assert "max_batch_size='auto'" in repr(auto)
    assert auto.batch_size_for(images) == auto_batch_size(model, (3, 16, 16), CPU, torch.float32)
    fixed = DAVE(model, num_samples=2, max_batch_size=5)
    assert not fixed.auto_batch_size
    assert fixed.batch_size_for(images) == 5
    assert get_attributor("dave", model, num_samples=2).auto_batch_size  # the registry too


@pytest.mark.slow
def test_dave_under_auto_splits_its_passes_by_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_vit(img_size=16, num_classes=3).double()
    images = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    reference = DAVE(model, num_samples=3, noise_alpha=0.3, max_batch_size=64).attribute(images, 1)
    monkeypatch.setattr(_batch_size, "_cpu_budget", lambda: 1)  # forces one input per pass
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    got = DAVE(model, num_samples=3, noise_alpha=0.3).attribute(images, 1)
    assert set(sizes) == {1}
    assert len(sizes) == 6
    torch.testing.assert_close(got, reference)


@pytest.mark.parametrize("value", ["big", 0, 2.5, True])
def test_bad_batch_sizes_fail_at_construction(value: object) -> None:
    model = tiny_vit(img_size=16, num_classes=3)
    with pytest.raises(BadInputError, match="`max_batch_size`"):
        DAVE(model, max_batch_size=value)  # type: ignore[arg-type]


def test_the_monitor_passes_auto_to_dave_only() -> None:
    monitor = AttributionMonitor(methods=("dave", "gradient"), num_samples=2)
    config = monitor.config
    assert config.max_batch_size == "auto"
    assert config.options_for("dave")["max_batch_size"] == "auto"
    assert "max_batch_size" not in config.options_for("gradient")
    assert config.forward_batch_size == 64
    explicit = AttributionMonitor(methods=("dave", "gradient"), max_batch_size=8).config
    assert explicit.options_for("gradient")["max_batch_size"] == 8
    assert explicit.forward_batch_size == 8
