from __future__ import annotations

import math

import pytest
import torch

from dave_lightning.errors import BadInputError
from dave_lightning.metrics import GridPointingGame
from dave_lightning.metrics.functional import grid_pointing_game
from tests.metrics.helpers import ref_grid_pointing_game

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-6, torch.float64: 1e-12}


def random_maps(batch: int, height: int, width: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, height, width, generator=generator, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("grid_size", "smoothing", "shape"),
    [(2, 1, (8, 8)), (2, 3, (6, 10)), (3, 5, (9, 12)), (1, 1, (4, 5)), (2, 7, (4, 6))],
)
def test_functional_matches_reference(dtype, grid_size, smoothing, shape):
    maps = random_maps(6, *shape, dtype)
    cells = torch.arange(6) % grid_size**2
    scores = grid_pointing_game(maps, cells, grid_size=grid_size, smoothing=smoothing)
    expected = [
        ref_grid_pointing_game(maps[i], int(cells[i]), grid_size, smoothing) for i in range(6)
    ]
    assert scores.dtype == dtype
    assert scores.shape == (6,)
    torch.testing.assert_close(
        scores.double(),
        torch.tensor(expected, dtype=torch.float64),
        atol=TOL[dtype],
        rtol=TOL[dtype],
    )


def test_smoothing_moves_mass_across_cell_borders():
    maps = torch.zeros(1, 4, 4, dtype=torch.float64)
    maps[0, 1, 1] = 1.0  # top-left cell, on its border with the others
    assert grid_pointing_game(maps, torch.tensor([0])).item() == 1.0
    smoothed = grid_pointing_game(maps, torch.tensor([0]), smoothing=3).item()
    assert smoothed == pytest.approx(4 / 9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_cases(dtype):
    maps = torch.zeros(5, 4, 6, dtype=dtype)
    maps[1] = -1.0  # all negative
    maps[2, :2, :3] = 2.0  # all positive mass in cell 0
    maps[3, 2:, 3:] = 2.0  # all positive mass in cell 3, explained cell 0
    maps[4, :2, :3] = 1.0
    maps[4, :2, 3:] = -7.0  # negative mass elsewhere is ignored
    cells = torch.tensor([0, 0, 0, 0, 0])
    scores = grid_pointing_game(maps, cells)
    assert scores.tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_non_finite_maps_give_nan_without_touching_others():
    maps = random_maps(3, 4, 4, torch.float32)
    clean = grid_pointing_game(maps, torch.tensor([0, 1, 2]), smoothing=3)
    maps[1, 0, 0] = float("nan")
    maps[2, 3, 3] = float("inf")
    scores = grid_pointing_game(maps, torch.tensor([0, 1, 2]), smoothing=3)
    assert scores[0] == clean[0]
    assert math.isnan(scores[1])
    assert math.isnan(scores[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_and_accumulates(dtype):
    maps = random_maps(10, 6, 6, dtype, seed=1)
    cells = torch.arange(10) % 4
    expected = grid_pointing_game(maps, cells)

    whole = GridPointingGame().set_dtype(dtype)
    whole.update(maps, cells)
    parts = GridPointingGame().set_dtype(dtype)
    for chunk in (slice(0, 3), slice(3, 4), slice(4, 10)):
        parts.update(maps[chunk], cells[chunk])

    for metric in (whole, parts):
        torch.testing.assert_close(metric.compute(), expected.mean(), atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(metric.per_sample_scores(), expected)
        assert int(metric.count) == 10
        assert int(metric.num_nan) == 0


def test_forward_returns_the_batch_value_and_accumulates():
    maps = random_maps(8, 4, 4, torch.float64, seed=2)
    cells = torch.arange(8) % 4
    metric = GridPointingGame().set_dtype(torch.float64)
    first = metric(maps[:5], cells[:5])
    second = metric(maps[5:], cells[5:])
    expected = grid_pointing_game(maps, cells)
    torch.testing.assert_close(first, expected[:5].mean())
    torch.testing.assert_close(second, expected[5:].mean())
    torch.testing.assert_close(metric.compute(), expected.mean())


def test_class_excludes_counts_and_warns_about_non_finite_maps():
    maps = random_maps(4, 4, 4, torch.float32, seed=3)
    maps[1, 2, 2] = float("nan")
    maps[3, 0, 1] = -float("inf")
    cells = torch.tensor([0, 1, 2, 3])
    metric = GridPointingGame(smoothing=3)
    with pytest.warns(UserWarning, match="2 of 4 attribution maps contain NaN"):
        metric.update(maps, cells)
    expected = grid_pointing_game(maps[[0, 2]], cells[[0, 2]], smoothing=3)
    torch.testing.assert_close(metric.compute(), expected.mean())
    assert int(metric.num_nan) == 2
    assert int(metric.count) == 2
    torch.testing.assert_close(metric.per_sample_scores(), expected)


def test_compute_without_samples_is_nan():
    metric = GridPointingGame()
    maps = torch.full((1, 4, 4), float("nan"))
    with pytest.warns(UserWarning, match="NaN"):
        metric.update(maps, torch.tensor([0]))
    assert math.isnan(metric.compute())


@pytest.mark.parametrize(
    ("maps", "cells", "options", "match"),
    [
        (torch.rand(4, 4), torch.tensor([0]), {}, r"`attributions`: expected a floating-point"),
        (torch.ones(1, 4, 4, dtype=torch.long), torch.tensor([0]), {}, r"received a torch.int64"),
        (torch.rand(2, 4, 4), torch.tensor([0.0, 1.0]), {}, r"`target_cell`: expected an integer"),
        (torch.rand(2, 4, 4), torch.tensor([True, False]), {}, r"`target_cell`: expected an int"),
        (torch.rand(2, 4, 4), torch.tensor([0, 1, 2]), {}, r"shape \(2,\), received .* \(3,\)"),
        (torch.rand(2, 4, 4), torch.tensor([0, 4]), {}, r"cell indices in \[0, 3\] .* \[0, 4\]"),
        (torch.rand(2, 6, 6), torch.tensor([-1, 4]), {"grid_size": 3}, r"in \[0, 8\]"),
        (torch.rand(1, 5, 4), torch.tensor([0]), {}, r"divisible by grid_size=2, .*\(1, 5, 4\)"),
        (torch.rand(1, 6, 6), torch.tensor([0]), {"grid_size": 4}, r"divisible by grid_size=4"),
        (torch.rand(1, 4, 4), torch.tensor([0]), {"smoothing": 2}, r"`smoothing`: .* odd"),
        (torch.rand(1, 4, 4), torch.tensor([0]), {"grid_size": 0}, r"`grid_size`: .* >= 1"),
    ],
)
def test_bad_inputs(maps, cells, options, match):
    with pytest.raises(BadInputError, match=match):
        grid_pointing_game(maps, cells, **options)


@pytest.mark.parametrize("options", [{"grid_size": 1.5}, {"smoothing": 0}, {"smoothing": True}])
def test_class_checks_options_at_construction(options):
    with pytest.raises(BadInputError):
        GridPointingGame(**options)
