"""The registry: names, options, errors and user registration."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import dave_lightning.registry as registry
from dave_lightning import DAVE
from dave_lightning.attributor import Attributor
from dave_lightning.baselines import (
    EffectiveInputXGradient,
    Gradient,
    InputXGradient,
    IntegratedGradients,
    LeGrad,
    RandomAttributor,
    SmoothGrad,
)
from dave_lightning.errors import BadInputError, ConfigurationError, UnsupportedModelError
from dave_lightning.registry import available_attributors, get_attributor, register_attributor
from tests.baselines.helpers import random_images
from tests.helpers import tiny_vit

BUILT_IN = {
    "dave": DAVE,
    "gradient": Gradient,
    "input_x_gradient": InputXGradient,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "effective_input_x_gradient": EffectiveInputXGradient,
    "legrad": LeGrad,
    "random": RandomAttributor,
}


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_every_built_in_name_builds_its_class() -> None:
    assert available_attributors()[: len(BUILT_IN)] == tuple(BUILT_IN)
    model = tiny_vit(seed=0)
    for name, cls in BUILT_IN.items():
        attributor = get_attributor(name, model)
        assert type(attributor) is cls
        assert attributor.model is model


def test_options_reach_the_method() -> None:
    model = tiny_vit(seed=0)
    assert get_attributor("dave", model, num_samples=3).num_samples == 3
    smoothgrad = get_attributor("smoothgrad", model, nt_samples=2, stdevs=0.5, max_batch_size=8)
    assert (smoothgrad.nt_samples, smoothgrad.stdevs, smoothgrad.max_batch_size) == (2, 0.5, 8)
    assert (
        get_attributor("integrated_gradients", model, method="riemann_left").method
        == "riemann_left"
    )
    assert get_attributor("legrad", model, min_max=True).min_max is True
    assert (
        get_attributor("random", model, autocast_dtype=torch.bfloat16).autocast_dtype
        == torch.bfloat16
    )


def test_an_unknown_name_lists_the_available_ones() -> None:
    hint = r"unknown attributor 'smooth_grad' \(did you mean 'smoothgrad'\?\)"
    with pytest.raises(ConfigurationError, match=hint) as info:
        get_attributor("smooth_grad", tiny_vit(seed=0))
    for name in BUILT_IN:
        assert repr(name) in str(info.value)
    with pytest.raises(BadInputError, match="unknown attributor 3; available: 'dave'"):
        get_attributor(3, tiny_vit(seed=0))  # type: ignore[arg-type]


def test_a_far_name_gets_no_suggestion() -> None:
    """'gradcam' is not close to 'random' or 'legrad' (difflib ratio 0.62): no 'did you mean'."""
    with pytest.raises(
        ConfigurationError, match=r"unknown attributor 'gradcam'; available"
    ) as info:
        get_attributor("gradcam", tiny_vit(seed=0))
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        (
            "smoothgrad",
            {"samples": 3},
            r"`smoothgrad`: unknown option 'samples'; it takes 'nt_samples'",
        ),
        (
            "legrad",
            {"n_steps": 3, "foo": 1},
            r"`legrad`: unknown option 'foo', 'n_steps'; it takes 'min_max'",
        ),
        (
            "gradient",
            {"seed": 0},
            r"`gradient`: unknown option 'seed'; it takes 'max_batch_size', 'autocast_dtype'",
        ),
        (
            "dave",
            {"model": tiny_vit(seed=0)},
            r"`dave`: multiple values for argument 'model'; it takes 'num_samples'",
        ),
    ],
)
def test_an_option_the_method_does_not_take_is_named(name: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        get_attributor(name, tiny_vit(seed=0), **options)


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("dave", {"num_samples": 0}, BadInputError, "`num_samples`"),
        ("integrated_gradients", {"n_steps": -1}, BadInputError, "`n_steps`"),
        ("smoothgrad", {"max_batch_size": 0}, BadInputError, "`max_batch_size`"),
        ("legrad", {}, UnsupportedModelError, "holds 0"),
    ],
)
def test_bad_values_and_models_fail_at_construction(
    name: str, options: dict, error: type, match: str
) -> None:
    model = (
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))
        if name == "legrad"
        else tiny_vit(seed=0)
    )
    with pytest.raises(error, match=match):
        get_attributor(name, model, **options)


class Constant(Attributor):
    name = "constant"

    def __init__(self, model: nn.Module, *, value: float = 1.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.value = value

    def _attribute(
        self, images: torch.Tensor, targets: torch.Tensor, image_ids: list[int]
    ) -> torch.Tensor:
        return images.new_full((*targets.shape, 1, *images.shape[-2:]), self.value)


def test_users_register_their_own_methods() -> None:
    register_attributor("constant", Constant)
    assert available_attributors()[-1] == "constant"
    attributor = get_attributor("constant", tiny_vit(seed=0), value=2.0, max_batch_size=4)
    assert torch.equal(
        attributor.attribute(random_images(1, 3, 32, 32), 0), torch.full((1, 32, 32), 2.0)
    )
    with pytest.raises(ConfigurationError, match="'constant' is already registered"):
        register_attributor("constant", Gradient)
    register_attributor("constant", Gradient, overwrite=True)
    assert type(get_attributor("constant", tiny_vit(seed=0))) is Gradient


def test_built_ins_are_protected_unless_overwritten() -> None:
    with pytest.raises(
        ConfigurationError, match=r"'gradient' is already registered.*overwrite=True"
    ):
        register_attributor("gradient", Constant)
    assert type(get_attributor("gradient", tiny_vit(seed=0))) is Gradient
    register_attributor("gradient", Constant, overwrite=True)
    assert type(get_attributor("gradient", tiny_vit(seed=0))) is Constant


@pytest.mark.parametrize(
    ("name", "factory", "match"),
    [
        ("", Constant, "`name`"),
        ("my method", Constant, "`name`"),
        (3, Constant, "`name`"),
        ("ok", 3, "`factory`"),
    ],
)
def test_registration_checks_its_arguments(name: Any, factory: Any, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        register_attributor(name, factory)


def test_a_factory_must_return_an_attributor() -> None:
    register_attributor("broken", lambda model, **options: model)
    with pytest.raises(
        ConfigurationError, match="'broken' returned VisionTransformer, not an Attributor"
    ):
        get_attributor("broken", tiny_vit(seed=0))


def test_a_registration_in_a_test_does_not_leak() -> None:
    assert "constant" not in available_attributors()
    assert "broken" not in available_attributors()
