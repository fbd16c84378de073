from __future__ import annotations

import pytest
import torch

from dave_lightning.metrics.functional import deletion_auc, pixel_deletion
from tests.metrics.helpers import (
    PixelLinear,
    constant_fill,
    mean_fill,
    ref_blur,
    ref_deletion_curve,
    ref_trapezoid_auc,
)

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-5, torch.float64: 1e-10}
CHANNELS, HEIGHT, WIDTH, CLASSES = 3, 5, 6, 4  # non-square


def linear_model(dtype: torch.dtype, seed: int = 0) -> PixelLinear:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(CLASSES, CHANNELS, HEIGHT, WIDTH, generator=generator, dtype=torch.float64)
    bias = torch.randn(CLASSES, generator=generator, dtype=torch.float64)
    return PixelLinear(0.4 * weight, bias).to(dtype)


def random_inputs(batch: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, CHANNELS, HEIGHT, WIDTH, generator=generator, dtype=torch.float64)
    maps = torch.randn(batch, HEIGHT, WIDTH, generator=generator, dtype=torch.float64)
    return images.to(dtype), maps.to(dtype)


FILL_TENSOR = torch.tensor([0.5, -1.0, 2.0]).view(3, 1, 1)
CASES = [
    dict(
        order="most_relevant_first",
        replacement="blur",
        score="softmax",
        steps=7,
        max_fraction=0.55,
        blur_kernel_size=5,
        blur_sigma=1.5,
    ),
    dict(
        order="least_relevant_first", replacement="zero", score="logit", steps=4, max_fraction=1.0
    ),
    dict(
        order="most_relevant_first", replacement="mean", score="softmax", steps=30, max_fraction=1.0
    ),
    dict(
        order="least_relevant_first",
        replacement=FILL_TENSOR,
        score="softmax",
        steps=5,
        max_fraction=0.9,
    ),
    dict(
        order="least_relevant_first", replacement="blur", score="logit", steps=3, max_fraction=0.8
    ),  # the paper's 31x31, sigma 7 blur: reflected several times
]


def reference_fill(image: torch.Tensor, options: dict) -> list:
    replacement = options["replacement"]
    if isinstance(replacement, torch.Tensor):
        return [constant_fill(float(v), 1, HEIGHT, WIDTH)[0] for v in replacement.flatten()]
    if replacement == "blur":
        return ref_blur(image, options.get("blur_kernel_size", 31), options.get("blur_sigma", 7.0))
    if replacement == "mean":
        return mean_fill(image)
    return constant_fill(0.0, CHANNELS, HEIGHT, WIDTH)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_functional_matches_reference(dtype, case):
    options = CASES[case]
    model = linear_model(dtype)
    images, maps = random_inputs(3, dtype, seed=case)
    if case == 2:
        maps = -maps.abs() - 0.1  # all negative: the order still follows the values
    target = torch.tensor([0, 3, 1])
    fractions, curves = pixel_deletion(model, images, maps, target, batch_size=4, **options)

    steps, max_fraction = options["steps"], options["max_fraction"]
    assert fractions.dtype == curves.dtype == dtype
    assert curves.shape == (3, steps + 1)
    expected_fractions = [k / steps * max_fraction for k in range(steps + 1)]
    expected_fractions = torch.tensor(expected_fractions, dtype=torch.float64)
    torch.testing.assert_close(fractions.double(), expected_fractions)
    for i in range(3):
        expected = ref_deletion_curve(
            model,
            images[i],
            maps[i],
            int(target[i]),
            steps=steps,
            max_fraction=max_fraction,
            most_first=options["order"] == "most_relevant_first",
            fill=reference_fill(images[i], options),
            score=options["score"],
        )
        torch.testing.assert_close(
            curves[i].double(),
            torch.tensor(expected, dtype=torch.float64),
            atol=TOL[dtype],
            rtol=TOL[dtype],
        )


def test_full_replacement_tensor_and_int_target():
    model = linear_model(torch.float64)
    images, maps = random_inputs(2, torch.float64, seed=7)
    fill = torch.randn(2, CHANNELS, HEIGHT, WIDTH, dtype=torch.float64)
    _, curves = pixel_deletion(model, images, maps, 2, steps=6, replacement=fill, score="logit")
    for i in range(2):
        expected = ref_deletion_curve(
            model,
            images[i],
            maps[i],
            2,
            steps=6,
            max_fraction=1.0,
            most_first=True,
            fill=[[row[:] for row in channel.tolist()] for channel in fill[i]],
            score="logit",
        )
        torch.testing.assert_close(curves[i], torch.tensor(expected, dtype=torch.float64))


def test_first_point_is_the_unperturbed_score_and_last_replaces_everything():
    model = linear_model(torch.float64)
    images, maps = random_inputs(2, torch.float64, seed=8)
    _, curves = pixel_deletion(model, images, maps, 1, steps=5, replacement="zero")
    torch.testing.assert_close(curves[:, 0], model(images).softmax(1)[:, 1])
    torch.testing.assert_close(curves[:, -1], model(torch.zeros_like(images)).softmax(1)[:, 1])


def count_rows(model: torch.nn.Module) -> list[int]:
    rows: list[int] = []
    model.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    return rows


@pytest.mark.parametrize("batch_size", [1, 4, 7, 1000])
def test_batching_changes_nothing_and_evaluates_each_copy_once(batch_size):
    model = linear_model(torch.float64)
    images, maps = random_inputs(3, torch.float64, seed=9)
    _, reference = pixel_deletion(model, images, maps, 0, steps=6, batch_size=1000)
    rows = count_rows(model)
    _, curves = pixel_deletion(model, images, maps, 0, steps=6, batch_size=batch_size)
    torch.testing.assert_close(curves, reference, atol=1e-12, rtol=1e-12)
    assert sum(rows) == 3 * 7
    assert max(rows) == min(batch_size, 21)
    assert len(rows) == -(-21 // batch_size)


def test_non_finite_maps_are_skipped_and_give_nan_rows():
    model = linear_model(torch.float64)
    images, maps = random_inputs(4, torch.float64, seed=10)
    _, clean = pixel_deletion(model, images[[0, 2]], maps[[0, 2]], 0, steps=4)
    maps[1, 0, 0] = float("nan")
    maps[3, 1, 2] = float("inf")
    rows = count_rows(model)
    _, curves = pixel_deletion(model, images, maps, 0, steps=4)
    assert torch.isnan(curves[[1, 3]]).all()
    torch.testing.assert_close(curves[[0, 2]], clean)
    assert sum(rows) == 2 * 5

    _, all_nan = pixel_deletion(model, images[1:2], maps[1:2], 0, steps=4)
    assert all_nan.shape == (1, 5)
    assert torch.isnan(all_nan).all()
    assert sum(rows) == 2 * 5  # the model was not called


def test_max_fraction_limits_the_removed_pixels():
    model = linear_model(torch.float64)
    images, maps = random_inputs(1, torch.float64, seed=11)
    fill = torch.zeros(1)
    _, curves = pixel_deletion(
        model, images, maps, 0, steps=2, max_fraction=0.1, replacement=fill, score="logit"
    )
    # round(0.1 * 30) = 3 pixels at the end, round(0.05 * 30) = round(1.5) = 2 in the middle.
    order = torch.argsort(maps.flatten(), descending=True)
    contribution = (model.weight[0].detach() * images[0]).sum(0).flatten()[order]
    expected_drop = torch.stack([contribution[:2].sum(), contribution[:3].sum()])
    torch.testing.assert_close(curves[0, 0] - curves[0, 1:], expected_drop)


def test_deletion_auc_matches_reference_trapezoid():
    curves = torch.tensor([[1.0, 0.7, 0.2, 0.1], [0.3, 0.3, 0.9, 0.0]], dtype=torch.float64)
    fractions = torch.tensor([0.0, 0.1, 0.5, 0.6], dtype=torch.float64)
    expected = [ref_trapezoid_auc(row, fractions.tolist()) for row in curves.tolist()]
    expected_auc = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(deletion_auc(curves, fractions), expected_auc)


def test_auc_lies_on_the_score_scale_for_any_max_fraction():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(CHANNELS * HEIGHT * WIDTH, 3))
    torch.nn.init.zeros_(model[1].weight)
    torch.nn.init.zeros_(model[1].bias)
    images, maps = random_inputs(2, torch.float32, seed=12)
    for max_fraction in (0.3, 0.9, 1.0):
        fractions, curves = pixel_deletion(model, images, maps, 0, max_fraction=max_fraction)
        assert float(fractions[-1]) == pytest.approx(max_fraction)
        torch.testing.assert_close(deletion_auc(curves, fractions), torch.full((2,), 1 / 3))
