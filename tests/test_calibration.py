"""Noise-level calibration: closed forms, a trained ViT, determinism, bounds, safety, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from dave_lightning import (
    BadInputError,
    CalibrationWarning,
    SensitivityCurve,
    calibrate_noise_alpha,
)
from dave_lightning.calibration import (
    DEFAULT_LEVELS,
    DEFAULT_TOLERANCE,
    CalibrationSettings,
    select_noise_alpha,
)
from tests.helpers import ModelState, tiny_vit

DOUBLE = torch.float64
LEVELS = torch.tensor(DEFAULT_LEVELS, dtype=DOUBLE)


def _spread(levels: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(1 - (1 - levels) ** 2)


# --- hand-built models whose response to noise is known ----------------------------------------


class _Margin(nn.Module):
    """Two classes, logits ``(u·x, 0)``: the margin of class 0 is linear in the input."""

    def __init__(self, direction: torch.Tensor) -> None:
        super().__init__()
        self.direction = nn.Parameter(direction.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = x.flatten(1) @ self.direction
        return torch.stack([margin, torch.zeros_like(margin)], dim=1)


class _Constant(nn.Module):
    """Ignores its input: tolerates any noise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0, -1.0]], dtype=x.dtype).expand(len(x), 3)


class _Pristine(nn.Module):
    """Class 0 only while the input has almost no energy: any noise flips it (on zero images)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = x.pow(2).mean(dim=(1, 2, 3))
        return torch.stack([1 - 100 * energy, torch.zeros_like(energy)], dim=1)


@pytest.fixture
def linear() -> tuple[nn.Module, torch.Tensor]:
    """A unit direction ``u`` and six images with clean margin ``u·x = 20``."""
    generator = torch.Generator().manual_seed(1)
    direction = torch.randn(3 * 8 * 8, generator=generator, dtype=DOUBLE)
    direction /= direction.norm()
    rest = torch.randn(6, 3 * 8 * 8, generator=generator, dtype=DOUBLE)
    rest -= (rest @ direction)[:, None] * direction
    images = (rest + 20 * direction).reshape(6, 3, 8, 8)
    return _Margin(direction), images


def test_linear_margin_follows_the_schedule_in_closed_form(
    linear: tuple[nn.Module, torch.Tensor],
) -> None:
    # margin(x̃) = (1 - t)·20 + s(t)·u·ε with the same ε at every level (common random numbers):
    # the retained margin of image i is exactly (1 - t) + s(t)·c_i, c_i = mean_d(u·ε_id) / 20
    model, images = linear
    _, curve = calibrate_noise_alpha(model, images, 0, statistic="margin", num_draws=3)
    per_image = curve.per_image
    c = (per_image[:, 5] - 0.5) / _spread(LEVELS[5])
    expected = (1 - LEVELS) + _spread(LEVELS)[None] * c[:, None]
    torch.testing.assert_close(per_image, expected)
    assert bool((c.abs() < 0.05).all())  # ε·u ~ N(0, 1): small against a margin of 20
    torch.testing.assert_close(curve.retained, per_image.mean(dim=0))
    assert bool((curve.retained.diff() < 0).all())
    assert torch.equal(curve.envelope, curve.retained)


@pytest.mark.parametrize(("tolerance", "expected"), [(0.35, 0.3), (0.75, 0.7), (0.05, 0.0)])
def test_linear_margin_picks_the_level_the_closed_form_predicts(
    linear: tuple[nn.Module, torch.Tensor], tolerance: float, expected: float
) -> None:
    # retained ≈ 1 - t (to 0.03), so the largest tolerated level is the grid's floor of tolerance
    model, images = linear
    alpha, curve = calibrate_noise_alpha(model, images, 0, statistic="margin", tolerance=tolerance)
    assert alpha == expected == curve.noise_alpha
    assert curve.threshold == pytest.approx(1 - tolerance)


def test_constant_model_tolerates_everything_and_gets_the_largest_level() -> None:
    images = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for statistic in ("probability", "margin"):
        alpha, curve = calibrate_noise_alpha(_Constant(), images, 0, statistic=statistic)
        assert alpha == DEFAULT_LEVELS[-1]
        assert torch.equal(curve.envelope, torch.ones(len(DEFAULT_LEVELS), dtype=DOUBLE))
    alpha, _ = calibrate_noise_alpha(_Constant(), images, 0, levels=(0.25, 0.5, 0.75))
    assert alpha == 0.75
    alpha, curve = calibrate_noise_alpha(_Constant(), images, 0, levels=[0.0])  # clean only
    assert alpha == 0.0
    assert curve.per_image.tolist() == [[1.0]] * 3


def test_fragile_model_tolerates_nothing_and_gets_the_smallest_level() -> None:
    images = torch.zeros(2, 3, 4, 4)
    for statistic in ("probability", "margin"):
        alpha, curve = calibrate_noise_alpha(_Pristine(), images, 0, statistic=statistic)
        assert alpha == 0.0
        assert curve.retained[0] == 1.0
        assert bool((curve.retained[1:] == 0).all())  # a flipped prediction keeps nothing
    with pytest.warns(CalibrationWarning, match=r"tolerates none of the levels \(0.2, 0.4\)"):
        alpha, curve = calibrate_noise_alpha(_Pristine(), images, 0, levels=[0.2, 0.4])
    assert alpha == 0.2
    assert curve.envelope.tolist() == [0.0, 0.0]


@pytest.mark.slow
def test_probability_is_measured_above_chance() -> None:
    # two classes, noise drowns the evidence: the probability falls to 1/2, which keeps nothing
    # above chance (a plain p_t / p_0 ratio would keep more than half and accept any level)
    direction = torch.zeros(3 * 4 * 4, dtype=DOUBLE)
    direction[0] = 3.0
    images = torch.zeros(4, 3, 4, 4, dtype=DOUBLE)
    images[:, 0, 0, 0] = 2.0  # margin 6, probability 0.9975; noise swamps it at large t
    alpha, curve = calibrate_noise_alpha(_Margin(direction), images, 0, num_draws=32)
    assert curve.retained[-1] < 0.5 < curve.retained[1]
    assert alpha < DEFAULT_LEVELS[-1]


# --- a briefly trained ViT ----------------------------------------------------------------------


def _colour_task(count: int, seed: int, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class is the colour channel shifted up by ``strength``."""
    labels = torch.arange(count) % 3
    images = torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    images[torch.arange(count), labels] += strength
    return images, labels


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = tiny_vit(img_size=16, num_classes=3, depth=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(60):
        images, labels = _colour_task(32, step, strength=0.3)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("statistic", ["probability", "margin"])
def test_trained_vit_has_a_monotone_curve_through_the_tolerance(
    trained: nn.Module, statistic: Any
) -> None:
    images, labels = _colour_task(12, 1000, strength=0.3)
    alpha, curve = calibrate_noise_alpha(trained, images, labels, statistic=statistic)
    assert curve.num_used >= 10  # confident and (mostly) right
    assert curve.retained[0] == 1.0
    assert bool((curve.retained.diff() <= 0.02).all())  # monotone up to Monte-Carlo noise
    assert curve.retained[-1] < 1 - DEFAULT_TOLERANCE < curve.retained[2]
    assert 0.2 <= alpha <= 0.8
    crossing = int((curve.envelope < 1 - DEFAULT_TOLERANCE).nonzero()[0])
    assert alpha == DEFAULT_LEVELS[crossing - 1]


@pytest.mark.slow
def test_stronger_evidence_tolerates_more_noise(trained: nn.Module) -> None:
    weak, labels = _colour_task(12, 1000, strength=0.3)
    strong, _ = _colour_task(12, 1000, strength=1.0)
    weak_alpha, _ = calibrate_noise_alpha(trained, weak, labels)
    strong_alpha, strong_curve = calibrate_noise_alpha(trained, strong, labels)
    assert strong_alpha > weak_alpha
    assert strong_curve.envelope[-1] > 0.5


# --- determinism, batching, bounds ----------------------------------------------------------------


def _assert_same_curve(first: SensitivityCurve, second: SensitivityCurve) -> None:
    assert first.noise_alpha == second.noise_alpha
    torch.testing.assert_close(first.per_image, second.per_image, equal_nan=True)
    torch.testing.assert_close(first.envelope, second.envelope)
    assert torch.equal(first.used, second.used)


@pytest.mark.slow
def test_same_seed_same_curve_other_seed_other_draws(trained: nn.Module) -> None:
    images, labels = _colour_task(6, 7, strength=0.3)
    _, first = calibrate_noise_alpha(trained, images, labels, seed=5)
    _, again = calibrate_noise_alpha(trained, images, labels, seed=5)
    assert torch.equal(first.per_image, again.per_image)
    assert torch.equal(first.retained, again.retained)
    _, other = calibrate_noise_alpha(trained, images, labels, seed=6)
    assert not torch.equal(first.per_image, other.per_image)


@pytest.mark.slow
@pytest.mark.parametrize("max_batch_size", [1, 7, 1000])
def test_independent_of_the_batch_size(trained: nn.Module, max_batch_size: int) -> None:
    images, labels = _colour_task(4, 8, strength=0.3)
    _, reference = calibrate_noise_alpha(trained, images, labels, max_batch_size=64)
    _, got = calibrate_noise_alpha(trained, images, labels, max_batch_size=max_batch_size)
    _assert_same_curve(got, reference)


def test_image_ids_key_the_noise_not_the_batch_position(trained: nn.Module) -> None:
    images, labels = _colour_task(5, 9, strength=0.3)
    _, full = calibrate_noise_alpha(trained, images, labels)
    _, part = calibrate_noise_alpha(trained, images[2:], labels[2:], image_ids=[2, 3, 4])
    torch.testing.assert_close(part.per_image, full.per_image[2:], equal_nan=True)
    _, shifted = calibrate_noise_alpha(trained, images[2:], labels[2:])
    assert not torch.allclose(shifted.per_image, full.per_image[2:], equal_nan=True)


def test_shards_with_global_ids_merge_into_the_whole_set_curve(trained: nn.Module) -> None:
    # the DDP recipe: each process measures its share, the per-image rows are gathered
    images, labels = _colour_task(6, 16, strength=0.3)
    settings = CalibrationSettings(tolerance=0.3)
    _, whole = calibrate_noise_alpha(trained, images, labels, tolerance=0.3)
    shards = [
        calibrate_noise_alpha(
            trained, images[rank::2], labels[rank::2], image_ids=range(rank, 6, 2), tolerance=0.3
        )[1]
        for rank in (0, 1)
    ]
    order = torch.cat([torch.arange(rank, 6, 2) for rank in (0, 1)]).argsort()
    per_image = torch.cat([shard.per_image for shard in shards])[order]
    used = torch.cat([shard.used for shard in shards])[order]
    merged = select_noise_alpha(per_image, used, settings)
    _assert_same_curve(merged, whole)
    torch.testing.assert_close(merged.retained, whole.retained)


@pytest.mark.parametrize(
    ("per_image", "used"),
    [
        (torch.ones(3, 4), torch.ones(3, dtype=torch.bool)),  # 4 values, 10 levels
        (torch.ones(3, 10), torch.ones(2, dtype=torch.bool)),
        (torch.ones(3, 10), torch.ones(3)),
        (torch.ones(10), torch.ones((), dtype=torch.bool)),
    ],
)
def test_select_rejects_mismatched_shapes(per_image: torch.Tensor, used: torch.Tensor) -> None:
    with pytest.raises(BadInputError, match=r"`per_image, used`: expected a \(B, \[K,\] 10\)"):
        select_noise_alpha(per_image, used)


def test_alpha_is_a_grid_level_in_the_unit_interval(trained: nn.Module) -> None:
    images, labels = _colour_task(4, 10, strength=0.3)
    for levels in ([0.0, 0.45, 0.9, 0.99], torch.linspace(0.05, 0.95, 7)):
        alpha, curve = calibrate_noise_alpha(trained, images, labels, levels=levels)
        assert alpha in curve.levels.tolist()
        assert 0.0 <= alpha < 1.0
        assert curve.levels.dtype == DOUBLE
        assert bool(((curve.envelope >= 0) & (curve.envelope <= 1)).all())


def test_several_targets_per_image_and_unused_pairs(trained: nn.Module) -> None:
    images, labels = _colour_task(4, 11, strength=1.0)
    wrong = (labels + 1) % 3
    pairs = torch.stack([labels, wrong], dim=1)
    alpha, curve = calibrate_noise_alpha(trained, images, pairs)
    assert curve.per_image.shape == (4, 2, len(DEFAULT_LEVELS))
    assert curve.used.tolist() == [[True, False]] * 4  # only the clean top class counts
    assert bool(curve.per_image[:, 1].isnan().all())
    single_alpha, single = calibrate_noise_alpha(trained, images, labels)
    assert single.per_image.shape == (4, len(DEFAULT_LEVELS))
    assert alpha == single_alpha
    torch.testing.assert_close(curve.per_image[:, 0], single.per_image)
    lines = curve.table().splitlines()
    assert len(lines) == 1 + len(DEFAULT_LEVELS)
    assert [line.split()[0] for line in lines if line.endswith(" *")] == [f"{alpha:.2f}"]


def test_a_model_confident_in_none_of_the_targets_warns_and_gets_the_smallest_level(
    trained: nn.Module,
) -> None:
    images, labels = _colour_task(3, 12, strength=1.0)
    with pytest.warns(
        CalibrationWarning, match=r"top class on none of the 3 clean images"
    ) as caught:
        alpha, curve = calibrate_noise_alpha(trained, images, (labels + 1) % 3, levels=[0.1, 0.5])
    assert caught[0].filename == __file__  # blames the caller
    assert alpha == 0.1
    assert curve.num_used == 0
    assert bool(curve.retained.isnan().all())


# --- safety: grad modes, module modes, parameters, RNG --------------------------------------------


@pytest.mark.slow
def test_works_under_no_grad_and_inference_mode_and_returns_ordinary_tensors(
    trained: nn.Module,
) -> None:
    images, labels = _colour_task(3, 13, strength=0.3)
    _, expected = calibrate_noise_alpha(trained, images, labels)
    with torch.no_grad():
        _, plain = calibrate_noise_alpha(trained, images, labels)
    with torch.inference_mode():
        _, inference = calibrate_noise_alpha(trained, images.clone(), labels.clone())
    for got in (plain, inference):
        _assert_same_curve(got, expected)
        tensors = (got.levels, got.retained, got.envelope, got.per_image, got.used)
        assert not any(tensor.is_inference() for tensor in tensors)


@pytest.mark.slow
def test_leaves_modes_parameters_grads_and_rng_as_they_were() -> None:
    torch.manual_seed(0)
    model = tiny_vit(img_size=16, num_classes=3, depth=1, drop_rate=0.5).eval()
    images, _ = _colour_task(3, 14, strength=0.3)
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    model.train()
    model.blocks[0].eval()
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    before, rng = ModelState.capture(model), torch.get_rng_state()

    _, first = calibrate_noise_alpha(model, images, predicted)

    assert torch.equal(torch.get_rng_state(), rng)
    assert before.differences(ModelState.capture(model)) == []
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, parameters[name]) for name, p in model.named_parameters())
    assert first.num_used == 3
    _, second = calibrate_noise_alpha(model, images, predicted)  # in eval mode: no dropout
    _assert_same_curve(first, second)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (
            {"levels": []},
            r"`levels`: expected a non-empty, strictly increasing sequence in \[0, 1\)",
        ),
        ({"levels": [0.2, 0.1]}, r"`levels`: .* received \[0.2, 0.1\]"),
        ({"levels": [0.0, 0.0]}, r"`levels`"),
        ({"levels": [0.5, 1.0]}, r"`levels`: .* received \[0.5, 1.0\]"),
        ({"levels": [-0.1]}, r"`levels`"),
        ({"levels": 0.5}, r"`levels`: .* received 0.5"),
        ({"levels": "0.5"}, r"`levels`"),
        ({"levels": [True]}, r"`levels`"),
        ({"tolerance": 1.5}, r"`tolerance`: expected a number in \[0, 1\], received 1.5"),
        ({"tolerance": math.nan}, r"`tolerance`"),
        ({"statistic": "logit"}, r"`statistic`: expected 'probability' or 'margin', received"),
        ({"num_draws": 0}, r"`num_draws`: expected an integer >= 1, received int 0"),
        ({"seed": 0.5}, r"`seed`: expected an integer, received 0.5"),
        ({"max_batch_size": 0}, r"`max_batch_size`: expected an integer >= 1, received int 0"),
        ({"image_ids": [0, 1]}, r"`image_ids`: expected 3 integers, one per image"),
    ],
)
def test_bad_options(trained: nn.Module, options: dict[str, Any], pattern: str) -> None:
    images, labels = _colour_task(3, 15, strength=0.3)
    with pytest.raises(BadInputError, match=pattern):
        calibrate_noise_alpha(trained, images, labels, **options)


@pytest.mark.parametrize(
    ("images", "target", "pattern"),
    [
        (torch.zeros(3, 16, 16), 0, r"`images`: expected a 4-D tensor \(B, C, H, W\)"),
        (torch.zeros(2, 1, 16, 16), 0, r"`images`: expected 3 channels"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), 0, r"`images`: expected a floating-point"),
        (torch.full((2, 3, 16, 16), math.nan), 0, r"`images`: expected finite values"),
        (torch.zeros(2, 3, 16, 16), 3, r"`target`: expected class indices in \[0, 3\)"),
        (torch.zeros(2, 3, 16, 16), torch.tensor([0, 1, 2]), r"`target`: .* B = 2"),
        (torch.zeros(2, 3, 16, 16), torch.tensor([0.0, 1.0]), r"`target`: .* torch.float32"),
    ],
)
def test_bad_images_and_targets(
    trained: nn.Module, images: torch.Tensor, target: Any, pattern: str
) -> None:
    with pytest.raises(BadInputError, match=pattern):
        calibrate_noise_alpha(trained, images, target)


class _Counting(nn.Module):
    def __init__(self, output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.output_shape = output_shape
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.zeros(len(x), *self.output_shape)


@pytest.mark.parametrize(
    ("output_shape", "pattern"),
    [
        ((3, 2), r"`model`: expected a classifier returning \(\d+, num_classes\) logits"),
        ((1,), r"num_classes >= 2, received an output of shape \(\d+, 1\)"),
    ],
)
def test_a_model_that_is_not_a_classifier(output_shape: tuple[int, ...], pattern: str) -> None:
    with pytest.raises(BadInputError, match=pattern):
        calibrate_noise_alpha(_Counting(output_shape), torch.zeros(2, 3, 4, 4), 0)


def test_checks_run_before_any_pass_and_model_must_be_a_module() -> None:
    model = _Counting((2,))
    with pytest.raises(BadInputError, match=r"`images`: expected finite values"):
        calibrate_noise_alpha(model, torch.full((2, 3, 4, 4), math.inf), 0)
    with pytest.raises(BadInputError, match=r"`levels`"):
        calibrate_noise_alpha(model, torch.zeros(2, 3, 4, 4), 0, levels=[])
    assert model.calls == 0
    with pytest.raises(BadInputError, match=r"`model`: expected a torch.nn.Module"):
        calibrate_noise_alpha(lambda x: x, torch.zeros(2, 3, 4, 4), 0)  # type: ignore[arg-type]


def test_target_range_is_checked_on_the_logits_when_the_model_does_not_declare_it() -> None:
    with pytest.raises(BadInputError, match=r"`target`: expected class indices in \[0, 3\)"):
        calibrate_noise_alpha(_Constant(), torch.zeros(2, 3, 4, 4), 5)


def test_settings_are_normalised() -> None:
    settings = CalibrationSettings(levels=torch.tensor([0.0, 0.5]), tolerance=1)
    assert settings.levels == (0.0, 0.5)
    assert isinstance(settings.tolerance, float)
