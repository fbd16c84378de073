"""The DAVE attributor: against a slow reference, reproducibility, batching and safety."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import timm
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dave_lightning import (
    DAVE,
    DEFAULT_NOISE_ALPHA,
    BadInputError,
    CalibrationWarning,
    UnsupportedModelError,
    calibrate_noise_alpha,
    default_noise_alpha,
    effective_mode,
    get_attributor,
    transforms,
)
from dave_lightning.calibration import DEFAULT_LEVELS
from dave_lightning.transforms import (
    LocalTransformDistribution,
    noise_levels,
    slot_noise,
    slot_seed,
    warp,
)
from tests.helpers import ModelState, reference_robust_mean, tiny_vit

DOUBLE = torch.float64


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return tiny_vit(img_size=16, num_classes=4).double().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=DOUBLE)


TARGETS = torch.tensor([0, 3, 1])


def _effective_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_(True)
    with effective_mode(model):
        (grad,) = torch.autograd.grad(model(leaf).gather(1, target[:, None]).sum(), leaf)
    return grad


def _slow_dave(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_samples: int,
    noise_alpha: float,
    seed: int,
    robust: bool,
) -> torch.Tensor:
    """One slot at a time, float64, with numpy's median for the robust mean."""
    distribution = LocalTransformDistribution()
    levels = noise_levels(num_samples, noise_alpha)
    out = []
    for b in range(images.shape[0]):
        maps = []
        for k in range(num_samples):
            seeds = [slot_seed(seed, b, k)]
            x = images[b : b + 1].clone().requires_grad_(True)
            t = float(levels[k])
            noise = slot_noise(seeds, images.shape[1:], images.device, images.dtype)
            z = (1 - t) * warp(x, distribution.sample(seeds)) + (1 - (1 - t) ** 2) ** 0.5 * noise
            with effective_mode(model):
                (grad,) = torch.autograd.grad(model(z)[0, int(targets[b])], x)
            maps.append((grad * images[b : b + 1])[0])
        stacked = torch.stack(maps).numpy()
        combined = reference_robust_mean(stacked) if robust else stacked.mean(axis=0)
        out.append(torch.from_numpy(combined).sum(dim=0))
    return torch.stack(out)


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", ["robust", "mean"])
def test_matches_a_slow_one_slot_at_a_time_reference(
    model: nn.Module, images: torch.Tensor, aggregation: str
) -> None:
    dave = DAVE(
        model, num_samples=6, noise_alpha=0.4, aggregation=aggregation, max_batch_size=4, seed=3
    )  # type: ignore[arg-type]
    expected = _slow_dave(
        model,
        images,
        TARGETS,
        num_samples=6,
        noise_alpha=0.4,
        seed=3,
        robust=aggregation == "robust",
    )
    torch.testing.assert_close(dave.attribute(images, TARGETS), expected)


def test_one_plain_sample_is_the_effective_gradient_times_input(
    model: nn.Module, images: torch.Tensor
) -> None:
    dave = DAVE(
        model,
        num_samples=1,
        noise_alpha=0.0,
        flip_prob=0.0,
        rotation=0.0,
        translation=0.0,
        scale=(1.0, 1.0),
    )
    expected = (_effective_gradient(model, images, TARGETS) * images).sum(dim=1)
    torch.testing.assert_close(dave.attribute(images, TARGETS), expected)
    channels = dave.attribute(images, TARGETS, keep_channels=True)
    torch.testing.assert_close(channels, _effective_gradient(model, images, TARGETS) * images)


def test_bitwise_reproducible_for_a_seed_and_seed_sensitive(
    model: nn.Module, images: torch.Tensor
) -> None:
    first = DAVE(model, num_samples=5, seed=7).attribute(images, TARGETS)
    assert torch.equal(first, DAVE(model, num_samples=5, seed=7).attribute(images, TARGETS))
    dave = DAVE(model, num_samples=5, seed=7)
    assert torch.equal(dave.attribute(images, TARGETS), dave.attribute(images, TARGETS))
    assert not torch.allclose(first, DAVE(model, num_samples=5, seed=8).attribute(images, TARGETS))


@pytest.mark.slow
def test_the_batched_keyed_noise_of_accelerators_keeps_every_guarantee(
    monkeypatch: pytest.MonkeyPatch, model: nn.Module, images: torch.Tensor
) -> None:
    """On a GPU all slots' noise is one counter-based draw; here forced on the CPU."""
    monkeypatch.setattr(transforms, "keyed_noise_on", lambda device: True)
    reference = DAVE(model, num_samples=6, noise_alpha=0.4, max_batch_size=64, seed=3).attribute(
        images, TARGETS
    )
    expected = _slow_dave(
        model, images, TARGETS, num_samples=6, noise_alpha=0.4, seed=3, robust=True
    )
    torch.testing.assert_close(reference, expected)
    again = DAVE(model, num_samples=6, noise_alpha=0.4, max_batch_size=64, seed=3)
    assert torch.equal(again.attribute(images, TARGETS), reference)
    for batch in (1, 5):
        dave = DAVE(model, num_samples=6, noise_alpha=0.4, max_batch_size=batch, seed=3)
        torch.testing.assert_close(dave.attribute(images, TARGETS), reference)


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", ["robust", "mean"])
def test_any_batch_size_or_memory_budget_gives_the_same_maps(
    model: nn.Module, images: torch.Tensor, aggregation: Any
) -> None:
    reference = DAVE(model, num_samples=7, aggregation=aggregation, max_batch_size=64).attribute(
        images, TARGETS
    )
    for options in (
        {"max_batch_size": 1},
        {"max_batch_size": 5},
        {"memory_budget_mb": 1e-9, "max_batch_size": 3},
    ):
        got = DAVE(model, num_samples=7, aggregation=aggregation, **options).attribute(
            images, TARGETS
        )
        torch.testing.assert_close(got, reference)


def test_image_ids_key_the_randomness_not_the_batch_position(
    model: nn.Module, images: torch.Tensor
) -> None:
    dave = DAVE(model, num_samples=4)
    full = dave.attribute(images, TARGETS)
    part = dave.attribute(images[1:], TARGETS[1:], image_ids=[1, 2])
    torch.testing.assert_close(part, full[1:])
    assert not torch.allclose(dave.attribute(images[1:], TARGETS[1:]), full[1:])


@pytest.mark.slow
def test_several_targets_share_passes_and_equal_single_targets(
    model: nn.Module, images: torch.Tensor
) -> None:
    dave = DAVE(model, num_samples=4, max_batch_size=5)
    pairs = torch.tensor([[0, 2], [3, 3], [1, 0]])
    both = dave.attribute(images, pairs)
    assert both.shape == (3, 2, 16, 16)
    for k in range(2):
        torch.testing.assert_close(both[:, k], dave.attribute(images, pairs[:, k]))
    assert dave.attribute(images, 2).shape == (3, 16, 16)


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", ["robust", "mean"])
def test_samples_of_all_images_and_targets_are_stacked_into_full_passes(
    model: nn.Module, images: torch.Tensor, aggregation: Any
) -> None:
    """3 images x N = 7 = 21 slots in passes of up to 5 inputs; both targets share each pass."""
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    try:
        DAVE(model, num_samples=7, max_batch_size=5, aggregation=aggregation).attribute(
            images, torch.tensor([[0, 2], [3, 3], [1, 0]])
        )
    finally:
        handle.remove()
    assert sizes == [5, 5, 5, 5, 1]


def test_mean_and_robust_aggregations_differ(model: nn.Module, images: torch.Tensor) -> None:
    robust = DAVE(model, num_samples=8, aggregation="robust").attribute(images, TARGETS)
    mean = DAVE(model, num_samples=8, aggregation="mean").attribute(images, TARGETS)
    assert not torch.allclose(robust, mean)
    assert torch.corrcoef(torch.stack([robust.flatten(), mean.flatten()]))[0, 1] > 0.5


# --- safety: grad modes, module modes, .grad, requires_grad, RNG, leftovers -----------------------


def test_works_under_no_grad_and_inference_mode(model: nn.Module, images: torch.Tensor) -> None:
    dave = DAVE(model, num_samples=3)
    expected = dave.attribute(images, TARGETS)
    with torch.no_grad():
        torch.testing.assert_close(dave.attribute(images, TARGETS), expected)
    with torch.inference_mode():
        inference_images = images.clone()
        got = dave.attribute(inference_images, TARGETS)
    torch.testing.assert_close(got, expected)


def test_leaves_model_grads_modes_and_rng_as_they_were(
    model: nn.Module, images: torch.Tensor
) -> None:
    model.train()
    model.blocks[0].eval()
    model.head.weight.grad = torch.ones_like(model.head.weight)
    model.patch_embed.proj.weight.requires_grad_(False)
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    before = ModelState.capture(model)
    rng = torch.get_rng_state()

    maps = DAVE(model, num_samples=3).attribute(images, TARGETS)

    assert torch.equal(torch.get_rng_state(), rng)
    assert before.differences(ModelState.capture(model)) == []
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "head.weight")
    assert not model.patch_embed.proj.weight.requires_grad
    assert all(torch.equal(p, parameters[name]) for name, p in model.named_parameters())
    model.eval()
    torch.testing.assert_close(maps, DAVE(model, num_samples=3).attribute(images, TARGETS))


def _wrapper_state(wrapper: nn.Module) -> ModelState:
    """The wrapper's state but for the attributes the test below changes on purpose."""
    return ModelState.capture(wrapper, ignore_attributes=("explode", "calls", "num_classes"))


class _Wrapper(nn.Module):
    """A user container that hides `num_classes` and can be made to fail."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.explode = False
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.explode:
            raise RuntimeError("model exploded")
        return self.inner(x)


def test_nothing_is_left_after_a_bad_target_or_a_failing_model(
    model: nn.Module, images: torch.Tensor
) -> None:
    wrapper = _Wrapper(model)
    wrapper.train()
    before = _wrapper_state(wrapper)
    dave = DAVE(wrapper, num_samples=2)
    model.num_classes = 0  # hide the class count: the range is checked on the first logits
    with pytest.raises(
        BadInputError,
        match=r"`target`: expected class indices in \[0, 4\), received indices from 0 to 9",
    ):
        dave.attribute(images, torch.tensor([0, 9, 1]))
    assert before.differences(_wrapper_state(wrapper)) == []
    wrapper.explode = True
    with pytest.raises(RuntimeError, match="model exploded"):
        dave.attribute(images, TARGETS)
    assert before.differences(_wrapper_state(wrapper)) == []


def test_nan_images_are_rejected_before_any_pass(model: nn.Module, images: torch.Tensor) -> None:
    wrapper = _Wrapper(model)
    bad = images.clone()
    bad[1, 0, 2, 3] = float("nan")
    bad[2, 1, 0, 0] = float("inf")
    with pytest.raises(
        BadInputError, match=r"`images`: expected finite values, received 2 NaN or infinite"
    ):
        DAVE(wrapper, num_samples=2).attribute(bad, TARGETS)
    assert wrapper.calls == 0


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images_shape", "target", "pattern"),
    [
        (
            (3, 16, 16),
            0,
            r"`images`: expected a 4-D tensor \(B, C, H, W\), received a torch.float64 tensor"
            r" of shape \(3, 16, 16\)",
        ),
        (
            (2, 1, 16, 16),
            0,
            r"`images`: expected 3 channels \(B, 3, H, W\) as the model takes, received"
            r" .* shape \(2, 1, 16, 16\)",
        ),
        (
            (2, 3, 16, 16),
            4,
            r"`target`: expected class indices in \[0, 4\), received indices from 4 to 4",
        ),
        (
            (2, 3, 16, 16),
            -1,
            r"`target`: expected class indices in \[0, 4\), received indices from -1",
        ),
        (
            (2, 3, 16, 16),
            torch.tensor([0, 1, 2]),
            r"`target`: expected an int, a \(B,\) or a \(B, K\) integer tensor .* B = 2,"
            r" received .* shape \(3,\)",
        ),
        ((2, 3, 16, 16), torch.tensor([0.0, 1.0]), r"`target`: .* received a torch.float32 tensor"),
        ((2, 3, 16, 16), True, r"`target`: .* received bool True"),
        ((2, 3, 16, 16), torch.zeros(2, 1, 1, dtype=torch.long), r"`target`: .*shape \(2, 1, 1\)"),
    ],
)
def test_bad_images_and_targets(
    model: nn.Module, images_shape: tuple[int, ...], target: Any, pattern: str
) -> None:
    with pytest.raises(BadInputError, match=pattern):
        DAVE(model, num_samples=1).attribute(torch.zeros(images_shape, dtype=DOUBLE), target)


def test_integer_images_are_rejected(model: nn.Module) -> None:
    with pytest.raises(BadInputError, match=r"`images`: expected a floating-point tensor"):
        DAVE(model, num_samples=1).attribute(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), 0)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"num_samples": 0}, r"`num_samples`: expected an integer >= 1, received int 0"),
        ({"num_samples": 2.5}, r"`num_samples`: expected an integer >= 1, received float 2.5"),
        (
            {"noise_alpha": 1.0},
            r"`noise_alpha`: expected a number in \[0, 1\), None or 'auto', received 1.0",
        ),
        ({"noise_alpha": -0.1}, r"`noise_alpha`"),
        ({"rotation": -5.0}, r"`rotation`"),
        ({"scale": (1.2, 1.0)}, r"`scale`"),
        (
            {"aggregation": "median"},
            r"`aggregation`: expected 'robust' or 'mean', received 'median'",
        ),
        ({"max_batch_size": 0}, r"`max_batch_size`"),
        ({"seed": 1.5}, r"`seed`: expected an integer, received 1.5"),
        ({"memory_budget_mb": 0}, r"`memory_budget_mb`"),
        ({"autocast_dtype": torch.int8}, r"`autocast_dtype`"),
    ],
)
def test_bad_options_fail_at_construction(
    model: nn.Module, options: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(BadInputError, match=pattern):
        DAVE(model, **options)


def test_unsupported_model_fails_at_construction() -> None:
    with pytest.raises(UnsupportedModelError, match="BatchNorm2d"):
        DAVE(nn.Sequential(nn.BatchNorm2d(3), tiny_vit()))


# --- noise level defaults and precision -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vit_base_patch16_224", 0.3),
        ("vit_small_patch16_224", 0.1),
        ("deit_base_patch16_224", 0.7),
        ("deit_small_patch16_224", 0.5),
        ("deit3_base_patch16_224", 0.9),
        ("deit3_small_patch16_224", 0.5),
        ("vit_small_patch16_224.dino", DEFAULT_NOISE_ALPHA),
        ("vit_tiny_patch16_224", DEFAULT_NOISE_ALPHA),
    ],
)
def test_default_noise_alpha_follows_the_paper(name: str, expected: float) -> None:
    model = timm.create_model(name, pretrained=False, depth=1, num_classes=2)
    assert default_noise_alpha(model) == expected
    assert DAVE(nn.Sequential(model)).noise_alpha == expected


@pytest.mark.slow
def test_attribution_is_float32_under_an_outer_autocast_and_autocast_is_opt_in() -> None:
    torch.manual_seed(0)
    model = tiny_vit(img_size=16, num_classes=4).eval()
    images = torch.randn(2, 3, 16, 16)
    expected = DAVE(model, num_samples=3).attribute(images, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = DAVE(model, num_samples=3).attribute(images, 1)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, expected)
    low = DAVE(model, num_samples=3, autocast_dtype=torch.bfloat16).attribute(images, 1)
    assert low.dtype == torch.float32
    assert not torch.equal(low, expected)
    assert float(np.corrcoef(low.flatten().numpy(), expected.flatten().numpy())[0, 1]) > 0.9


@pytest.mark.slow
def test_inference_mode_targets_and_outputs_are_ordinary_tensors(
    model: nn.Module, images: torch.Tensor
) -> None:
    dave = DAVE(model, num_samples=2)
    with torch.inference_mode():
        maps = dave.attribute(images.clone(), TARGETS.clone())
    assert not maps.is_inference()
    torch.testing.assert_close(maps, dave.attribute(images, TARGETS))


class _Holder(nn.Module):
    """A LightningModule-like holder: a metric registered before the network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.metric = MulticlassAccuracy(num_classes=1000)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_metric_on_a_lightning_module_is_not_taken_for_the_network(model: nn.Module) -> None:
    with pytest.raises(BadInputError, match=r"class indices in \[0, 4\)"):
        DAVE(_Holder(model), num_samples=1).attribute(torch.zeros(1, 3, 16, 16, dtype=DOUBLE), 7)


# --- noise_alpha="auto" ---------------------------------------------------------------------------


def _predicted(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).argmax(dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("tolerance", [0.5, 1.0])
def test_auto_attributes_with_the_calibrated_level(
    model: nn.Module, images: torch.Tensor, tolerance: float
) -> None:
    targets = _predicted(model, images)
    dave = DAVE(
        model,
        num_samples=4,
        noise_alpha="auto",
        seed=2,
        calibration_options={"tolerance": tolerance},
    )
    assert dave.noise_alpha is None
    assert dave.calibration is None
    maps = dave.attribute(images, targets)
    alpha, curve = calibrate_noise_alpha(model, images, targets, tolerance=tolerance, seed=2)
    assert dave.noise_alpha == alpha
    assert dave.calibration is not None
    assert torch.equal(dave.calibration.per_image, curve.per_image)
    assert torch.equal(
        maps, DAVE(model, num_samples=4, noise_alpha=alpha, seed=2).attribute(images, targets)
    )
    if tolerance == 1.0:  # everything tolerated: the largest level, not the default
        assert alpha == DEFAULT_LEVELS[-1]
        other = DAVE(model, num_samples=4, seed=2).attribute(images, targets)
        assert not torch.allclose(maps, other)


def test_auto_is_reproducible_for_the_same_images_and_seed(
    model: nn.Module, images: torch.Tensor
) -> None:
    targets = _predicted(model, images)
    first = DAVE(model, num_samples=3, noise_alpha="auto", seed=4)
    second = DAVE(model, num_samples=3, noise_alpha="auto", seed=4)
    assert torch.equal(first.attribute(images, targets), second.attribute(images, targets))
    assert first.noise_alpha == second.noise_alpha


@pytest.mark.slow
def test_auto_calibrates_on_each_call_until_calibrate_fixes_the_level(
    model: nn.Module, images: torch.Tensor
) -> None:
    targets = _predicted(model, images)
    dave = DAVE(model, num_samples=2, noise_alpha="auto")
    assert "noise_alpha='auto'" in repr(dave)
    dave.attribute(images, targets)
    first = dave.calibration
    dave.attribute(images[:2], targets[:2])
    assert dave.calibration is not first  # measured again, on the images of this call
    assert dave.calibration is not None
    assert dave.calibration.per_image.shape[0] == 2

    alpha = dave.calibrate(images, targets, image_ids=[5, 6, 7])
    fixed = dave.calibration
    assert alpha == dave.noise_alpha
    assert f"noise_alpha={alpha}" in repr(dave)
    maps = dave.attribute(images[:1], targets[:1])
    assert dave.calibration is fixed
    assert dave.noise_alpha == alpha
    expected = DAVE(model, num_samples=2, noise_alpha=alpha).attribute(images[:1], targets[:1])
    assert torch.equal(maps, expected)
    assert dave.calibrate(images, targets, image_ids=[5, 6, 7]) == alpha  # deterministic


@pytest.mark.slow
def test_calibrate_sets_the_level_of_any_dave(model: nn.Module, images: torch.Tensor) -> None:
    dave = DAVE(model, num_samples=2, noise_alpha=0.3, calibration_options={"tolerance": 1.0})
    assert dave.calibrate(images, _predicted(model, images)) == DEFAULT_LEVELS[-1]
    assert dave.noise_alpha == DEFAULT_LEVELS[-1]


@pytest.mark.slow
def test_use_calibration_fixes_the_level_of_a_curve_measured_elsewhere(
    model: nn.Module, images: torch.Tensor
) -> None:
    targets = _predicted(model, images)
    _, curve = calibrate_noise_alpha(model, images, targets, levels=[0.0, 0.15, 0.65], tolerance=1)
    dave = DAVE(model, num_samples=3, noise_alpha="auto")
    assert dave.use_calibration(curve) == 0.65
    assert dave.calibration is curve
    maps = dave.attribute(images, targets)
    assert dave.noise_alpha == 0.65
    assert torch.equal(
        maps, DAVE(model, num_samples=3, noise_alpha=0.65).attribute(images, targets)
    )
    with pytest.raises(
        BadInputError, match=r"`curve`: expected a SensitivityCurve, received float"
    ):
        dave.use_calibration(0.5)  # type: ignore[arg-type]


@pytest.mark.slow
def test_auto_works_under_inference_mode(model: nn.Module, images: torch.Tensor) -> None:
    targets = _predicted(model, images)
    expected = DAVE(model, num_samples=3, noise_alpha="auto").attribute(images, targets)
    dave = DAVE(model, num_samples=3, noise_alpha="auto")
    with torch.inference_mode():
        got = dave.attribute(images.clone(), targets.clone())
    assert not got.is_inference()
    torch.testing.assert_close(got, expected)
    assert dave.calibration is not None
    assert not dave.calibration.retained.is_inference()


def test_auto_checks_inputs_before_any_pass(model: nn.Module, images: torch.Tensor) -> None:
    wrapper = _Wrapper(model)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    dave = DAVE(wrapper, num_samples=2, noise_alpha="auto")
    with pytest.raises(BadInputError, match=r"`images`: expected finite values"):
        dave.attribute(bad, TARGETS)
    with pytest.raises(BadInputError, match=r"`target`: expected class indices in \[0, 4\)"):
        dave.calibrate(images, 9)
    assert wrapper.calls == 0
    assert dave.noise_alpha is None


def test_auto_warns_the_caller_when_no_target_is_predicted(
    model: nn.Module, images: torch.Tensor
) -> None:
    wrong = (_predicted(model, images) + 1) % 4
    dave = DAVE(model, num_samples=2, noise_alpha="auto")
    with pytest.warns(CalibrationWarning, match="top class on none") as caught:
        dave.attribute(images, wrong)
    assert caught[0].filename == __file__
    assert dave.noise_alpha == DEFAULT_LEVELS[0]
    with pytest.warns(CalibrationWarning) as caught:
        dave.calibrate(images, wrong)
    assert caught[0].filename == __file__


def test_auto_through_the_registry(model: nn.Module, images: torch.Tensor) -> None:
    dave = get_attributor(
        "dave", model, num_samples=2, noise_alpha="auto", calibration_options={"num_draws": 1}
    )
    assert isinstance(dave, DAVE)
    dave.attribute(images, _predicted(model, images))
    assert dave.noise_alpha in DEFAULT_LEVELS


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (
            {"noise_alpha": "automatic"},
            r"`noise_alpha`: expected a number in \[0, 1\), None or 'auto', received 'automatic'",
        ),
        ({"noise_alpha": "AUTO"}, r"`noise_alpha`: .* received 'AUTO'"),
        ({"noise_alpha": ""}, r"`noise_alpha`: .* received ''"),
        (
            {"noise_alpha": "auto", "calibration_options": {"tol": 0.5}},
            r"`calibration_options`: expected None or a mapping with keys from 'levels', "
            r"'tolerance', 'statistic', 'num_draws', received \{'tol': 0.5\}",
        ),
        ({"calibration_options": [("tolerance", 0.5)]}, r"`calibration_options`"),
        ({"calibration_options": {"tolerance": 2}}, r"`tolerance`: expected a number in \[0, 1\]"),
        ({"calibration_options": {"levels": [0.5, 0.2]}}, r"`levels`"),
        ({"calibration_options": {"statistic": "logit"}}, r"`statistic`"),
    ],
)
def test_bad_auto_options_fail_at_construction(
    model: nn.Module, options: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(BadInputError, match=pattern):
        DAVE(model, **options)
