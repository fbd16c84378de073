from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dave_lightning.errors import BadInputError
from dave_lightning.metrics import PixelDeletion
from dave_lightning.metrics.functional import pixel_deletion
from tests.metrics.helpers import PixelLinear, ref_trapezoid_auc

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-6, torch.float64: 1e-12}
OPTIONS = dict(steps=5, max_fraction=0.8, blur_kernel_size=3, blur_sigma=1.0, batch_size=8)


def setup(batch: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(3, 2, 4, 5, generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    images = torch.randn(batch, 2, 4, 5, generator=generator, dtype=torch.float64)
    maps = torch.randn(batch, 4, 5, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (batch,), generator=generator)
    return PixelLinear(weight, bias).to(dtype), images.to(dtype), maps.to(dtype), target


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_and_accumulates(dtype):
    model, images, maps, target = setup(7, dtype)
    fractions, curves = pixel_deletion(model, images, maps, target, **OPTIONS)
    whole = PixelDeletion(**OPTIONS).set_dtype(dtype)
    whole.update(model, images, maps, target)
    parts = PixelDeletion(**OPTIONS).set_dtype(dtype)
    for chunk in (slice(0, 2), slice(2, 3), slice(3, 7)):
        parts.update(model, images[chunk], maps[chunk], target[chunk])

    per_sample = [ref_trapezoid_auc(row, fractions.tolist()) for row in curves.tolist()]
    for metric in (whole, parts):
        result = metric.compute()
        assert set(result) == {"auc", "curve", "fractions"}
        torch.testing.assert_close(result["fractions"], fractions)
        torch.testing.assert_close(result["curve"], curves.mean(0), atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(
            result["auc"].double(),
            torch.tensor(per_sample, dtype=torch.float64).mean(),
            atol=TOL[dtype],
            rtol=0,
        )
        torch.testing.assert_close(
            metric.per_sample_auc().double(),
            torch.tensor(per_sample, dtype=torch.float64),
            atol=TOL[dtype],
            rtol=0,
        )
        assert int(metric.count) == 7
        assert int(metric.num_nan) == 0


def test_forward_returns_the_batch_result_and_accumulates():
    model, images, maps, target = setup(6, torch.float64)
    metric = PixelDeletion(**OPTIONS).set_dtype(torch.float64)
    first = metric(model, images[:4], maps[:4], target[:4])
    metric(model, images[4:], maps[4:], target[4:])
    _, curves = pixel_deletion(model, images, maps, target, **OPTIONS)
    torch.testing.assert_close(first["curve"], curves[:4].mean(0))
    torch.testing.assert_close(metric.compute()["curve"], curves.mean(0))


def test_non_finite_maps_are_excluded_counted_and_warned_about():
    model, images, maps, target = setup(5, torch.float64)
    maps[1, 0, 0] = float("nan")
    metric = PixelDeletion(**OPTIONS).set_dtype(torch.float64)
    with pytest.warns(UserWarning, match="1 of 5 attribution maps contain NaN"):
        metric.update(model, images, maps, target)
    keep = [0, 2, 3, 4]
    _, curves = pixel_deletion(model, images[keep], maps[keep], target[keep], **OPTIONS)
    torch.testing.assert_close(metric.compute()["curve"], curves.mean(0))
    assert int(metric.num_nan) == 1
    assert int(metric.count) == 4
    assert metric.per_sample_auc().shape == (4,)


def test_the_model_is_used_not_stored():
    model, images, maps, target = setup(2, torch.float32)
    metric = PixelDeletion(**OPTIONS)
    metric.update(model, images, maps, target)
    metric(model, images, maps, target)
    assert not list(metric.children())
    assert all(value is not model for value in vars(metric).values())
    assert set(metric._defaults) == {"curve_sum", "count", "num_nan", "auc_scores"}


@pytest.mark.parametrize(
    ("order", "higher_is_better"),
    [("most_relevant_first", False), ("least_relevant_first", True), ("random", None)],
)
def test_higher_is_better_follows_the_order(order, higher_is_better):
    metric = PixelDeletion(order=order)
    assert metric.higher_is_better is higher_is_better
    assert metric.is_differentiable is False
    assert metric.full_state_update is False


def test_plot_bounds_follow_the_score():
    assert (PixelDeletion().plot_lower_bound, PixelDeletion().plot_upper_bound) == (0.0, 1.0)
    logit = PixelDeletion(score="logit")
    assert (logit.plot_lower_bound, logit.plot_upper_bound) == (None, None)


def test_state_shapes_are_fixed_by_the_options():
    metric = PixelDeletion(steps=9)
    assert metric.curve_sum.shape == (10,)
    assert metric._reductions["curve_sum"].__name__ == "dim_zero_sum"
    assert metric._reductions["auc_scores"].__name__ == "dim_zero_cat"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"order": "least"}, r"`order`: expected one of"),
        ({"steps": 2.0}, r"`steps`: expected an integer >= 1, received float 2.0"),
        ({"max_fraction": -0.1}, r"`max_fraction`"),
        ({"replacement": "noise"}, r"`replacement`"),
        ({"score": "prob"}, r"`score`"),
    ],
)
def test_options_are_checked_at_construction(options, match):
    with pytest.raises(BadInputError, match=match):
        PixelDeletion(**options)


def test_compute_before_any_sample_is_nan():
    metric = PixelDeletion(steps=3)
    with pytest.warns(UserWarning, match="called before the ``update``"):
        result = metric.compute()
    assert math.isnan(result["auc"])
    assert result["curve"].shape == (4,)


def test_paper_setting_runs_with_a_tiny_vit_like_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    images, maps = torch.randn(2, 3, 16, 16), torch.randn(2, 16, 16)
    metric = PixelDeletion(steps=128, max_fraction=0.9, order="least_relevant_first")
    metric.update(model, images, maps, torch.tensor([1, 4]))
    result = metric.compute()
    assert result["curve"].shape == (129,)
    assert float(result["fractions"][-1]) == pytest.approx(0.9)
    assert 0.0 <= float(result["auc"]) <= 1.0
    assert metric.higher_is_better is True


def test_tied_maps_accumulated_over_updates_equal_one_call():
    # Rounded maps are full of ties, so the result depends on each image's tie-breaking
    # permutation: the default numbering must run across `update` calls.
    model, images, maps, target = setup(6, torch.float64)
    maps = maps.round()
    whole = PixelDeletion(**OPTIONS).set_dtype(torch.float64)
    whole.update(model, images, maps, target)
    parts = PixelDeletion(**OPTIONS).set_dtype(torch.float64)
    for chunk in (slice(0, 2), slice(2, 6)):
        parts.update(model, images[chunk], maps[chunk], target[chunk])
    torch.testing.assert_close(parts.per_sample_auc(), whole.per_sample_auc())
    by_position = PixelDeletion(**OPTIONS).set_dtype(torch.float64)
    for chunk in (slice(0, 2), slice(2, 6)):  # ids restart at 0: other permutations
        ids = torch.arange(chunk.stop - chunk.start)
        by_position.update(model, images[chunk], maps[chunk], target[chunk], image_ids=ids)
    assert not torch.allclose(by_position.per_sample_auc(), whole.per_sample_auc())
