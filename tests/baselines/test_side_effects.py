"""Every registered method leaves the model, the grad mode and the global RNG as it found them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from dave_lightning.errors import BadInputError
from dave_lightning.registry import get_attributor
from tests.baselines.helpers import FAST_OPTIONS, random_images, randomise_embeddings
from tests.helpers import ModelState, tiny_vit

# every registered method, plus DAVE with noise_alpha="auto" (it calibrates before attributing)
CASES: dict[str, tuple[str, dict]] = {
    name: (name, options) for name, options in FAST_OPTIONS.items()
}
CASES["dave_auto"] = ("dave", {"num_samples": 2, "noise_alpha": "auto"})
RUNS_MODEL = [case for case in CASES if case != "random"]


def build(case: str, model):
    name, options = CASES[case]
    return get_attributor(name, model, **options)


GRAD_MODES = {
    "plain": torch.enable_grad,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


def awkward_model() -> nn.Module:
    """A tiny ViT in a state an attributor could easily disturb.

    Training mode with dropout (an attributor that forgot eval mode would consume the global RNG
    and give random maps), one submodule in eval mode, frozen patch embedding, a populated
    ``.grad``, and mixed ``fused_attn`` flags.
    """
    model = randomise_embeddings(
        tiny_vit(seed=0, drop_rate=0.3, attn_drop_rate=0.3, proj_drop_rate=0.3)
    )
    model.train()
    model.blocks[1].mlp.eval()
    model.patch_embed.requires_grad_(False)
    model.head.weight.grad = torch.ones_like(model.head.weight)
    model.blocks[0].attn.fused_attn = True
    model.blocks[1].attn.fused_attn = False
    return model


def assert_untouched(before: ModelState, model: nn.Module) -> None:
    assert before.differences(ModelState.capture(model)) == []


def test_the_snapshot_sees_every_kind_of_side_effect() -> None:
    changes = [
        lambda m: m.blocks[0].attn.__setattr__("fused_attn", False),
        lambda m: m.blocks[0].mlp.fc1.register_forward_hook(lambda *a: None),
        lambda m: m.blocks[0].norm1.__setattr__("forward", lambda x: x),
        lambda m: m.blocks[1].mlp.train(),
        lambda m: m.patch_embed.requires_grad_(True),
        lambda m: m.head.weight.grad.add_(1),
        lambda m: m.cls_token.__setattr__("grad", torch.zeros_like(m.cls_token)),
        lambda m: m.head.bias.data.add_(1),
        lambda m: torch.rand(1),
        lambda m: torch.set_grad_enabled(False),
    ]
    for change in changes:
        model = awkward_model()
        before = ModelState.capture(model)
        try:
            change(model)
            assert before.differences(ModelState.capture(model)), change
        finally:
            torch.set_grad_enabled(True)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["plain", "no_grad", "inference_mode"])
def test_a_normal_call_leaves_nothing_behind(name: str, mode: str) -> None:
    model = awkward_model()
    images, pairs = random_images(2, 3, 32, 32), [[1, 4], [0, 2]]
    attributor = build(name, model)
    before = ModelState.capture(model)
    with GRAD_MODES[mode]():
        inside = ModelState.capture(model)
        target = torch.tensor(pairs)  # built in the mode, as a validation step would
        maps = attributor.attribute(images, target)
        assert_untouched(inside, model)
    assert_untouched(before, model)
    assert maps.shape == (2, 2, 32, 32)
    assert not maps.requires_grad
    assert bool(torch.isfinite(maps).all())
    # in eval mode and from a clean state, the same maps: dropout was off, nothing leaked
    reference = build(name, awkward_model().eval())
    torch.testing.assert_close(maps, reference.attribute(images, torch.tensor(pairs)))


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_target_leaves_nothing_behind(name: str) -> None:
    model = awkward_model()
    attributor = build(name, model)
    images = random_images(2, 3, 32, 32)
    before = ModelState.capture(model)
    for target in (5, torch.tensor([0.5, 1.0]), torch.tensor([[1], [2], [3]])):
        with pytest.raises(BadInputError, match="`target`"):
            attributor.attribute(images, target)
        assert_untouched(before, model)


@pytest.mark.parametrize("name", RUNS_MODEL)
def test_a_target_the_model_rejects_mid_call_leaves_nothing_behind(name: str) -> None:
    model = awkward_model()
    # hide the class count, so the range check happens on the model's output, inside the call
    model.num_classes = 0
    attributor = build(name, model)
    images = random_images(2, 3, 32, 32)
    before = ModelState.capture(model)
    with pytest.raises(BadInputError, match=r"class indices in \[0, 5\)"):
        attributor.attribute(images, torch.tensor([1, 7]))
    assert_untouched(before, model)


def _refuse(*_: object) -> None:
    raise AssertionError("Input height (40) doesn't match model (32).")


@pytest.mark.parametrize("name", RUNS_MODEL)
def test_a_model_that_raises_early_leaves_nothing_behind(name: str) -> None:
    model = awkward_model()
    attributor = build(name, model)
    images = random_images(2, 3, 32, 32)
    # the patch embedding refuses its input (a wrong size is now refused before any pass)
    model.patch_embed.register_forward_pre_hook(_refuse)
    before = ModelState.capture(model)
    with pytest.raises(AssertionError, match="Input height"):
        attributor.attribute(images, 1)
    assert_untouched(before, model)


@pytest.mark.parametrize("name", RUNS_MODEL)
def test_a_model_that_raises_in_its_head_leaves_nothing_behind(name: str) -> None:
    model = awkward_model()
    model.head = nn.Linear(33, 5)  # every block runs, then the head fails on the width
    attributor = build(name, model)
    images = random_images(2, 3, 32, 32)
    before = ModelState.capture(model)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        attributor.attribute(images, 1)
    assert_untouched(before, model)


@pytest.mark.slow
def test_importing_the_methods_leaves_lightning_and_the_metrics_out() -> None:
    code = (
        "import sys, dave_lightning.registry, dave_lightning.baselines\n"
        "bad = [m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning',"
        " 'dave_lightning.metrics', 'dave_lightning.callbacks'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def _env() -> dict[str, str]:
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
