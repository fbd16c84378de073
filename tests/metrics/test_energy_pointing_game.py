from __future__ import annotations

import math

import pytest
import torch

from dave_lightning.errors import BadInputError
from dave_lightning.metrics import EnergyPointingGame
from dave_lightning.metrics.functional import boxes_to_mask, energy_pointing_game
from tests.metrics.helpers import ref_energy_pointing_game, ref_int_box_mask

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-6, torch.float64: 1e-12}
NAN = float("nan")


def random_maps(batch: int, height: int, width: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, height, width, generator=generator, dtype=torch.float64).to(dtype)


# Per sample: several overlapping boxes, one clipped by the image border, fractional corners,
# a box partly outside on the top-left, a single-pixel box.
BOX_SETS = [
    [(0, 0, 3, 2), (2, 1, 5, 4)],
    [(4, 3, 99, 99)],
    [(0.4, 0.6, 2.5, 3.49), (-3.0, -1.0, 1.0, 1.0)],
    [(3, 2, 4, 3)],
]


def assert_close_to(scores: torch.Tensor, expected: list[float], dtype: torch.dtype) -> None:
    torch.testing.assert_close(
        scores.double(),
        torch.tensor(expected, dtype=torch.float64),
        atol=TOL[dtype],
        rtol=TOL[dtype],
        equal_nan=True,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("box_dtype", [torch.float32, torch.float64])
def test_functional_list_of_boxes_matches_reference(dtype, box_dtype):
    maps = random_maps(4, 5, 7, dtype)  # non-square
    boxes = [torch.tensor(box_set, dtype=box_dtype) for box_set in BOX_SETS]
    scores = energy_pointing_game(maps, boxes)
    expected = [ref_energy_pointing_game(maps[i], BOX_SETS[i]) for i in range(4)]
    assert scores.dtype == dtype
    assert_close_to(scores, expected, dtype)
    assert len(set(expected)) == 4  # the boxes matter: four different scores


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_box_tensor_with_nan_padding_matches_reference(dtype):
    maps = random_maps(4, 5, 7, dtype, seed=1)
    padded = torch.full((4, 2, 4), NAN, dtype=torch.float64)
    for i, box_set in enumerate(BOX_SETS):
        padded[i, : len(box_set)] = torch.tensor(box_set, dtype=torch.float64)
    expected = [ref_energy_pointing_game(maps[i], BOX_SETS[i]) for i in range(4)]
    assert_close_to(energy_pointing_game(maps, padded), expected, dtype)


def test_one_integer_box_per_image_as_the_dataset_collates_it():
    maps = random_maps(3, 6, 8, torch.float32, seed=2)
    boxes = [(1, 1, 4, 5), (0, 2, 8, 3), (5, 0, 7, 6)]
    expected = [ref_energy_pointing_game(maps[i], [boxes[i]]) for i in range(3)]
    for dtype in (torch.int64, torch.float32):
        collated = torch.tensor(boxes, dtype=dtype)[:, None]
        assert_close_to(energy_pointing_game(maps, collated), expected, torch.float32)


def test_integer_boxes_are_end_exclusive_and_clamped():
    boxes = [(1, 0, 3, 2), (-2, 3, 2, 10), (5, 1, 5, 3), (6, 0, 9, 9)]  # last two: empty
    mask = boxes_to_mask([torch.tensor([box]) for box in boxes], 4, 5, 6)
    for i, box in enumerate(boxes):
        assert torch.equal(mask[i], ref_int_box_mask(5, 6, [box])), box


def test_mask_input_equals_box_input():
    maps = random_maps(4, 5, 7, torch.float64, seed=3)
    boxes = [torch.tensor(box_set, dtype=torch.float64) for box_set in BOX_SETS]
    mask = boxes_to_mask(boxes, 4, 5, 7)
    assert mask.dtype == torch.bool
    assert mask.shape == (4, 5, 7)
    torch.testing.assert_close(energy_pointing_game(maps, mask), energy_pointing_game(maps, boxes))


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_cases(dtype):
    maps = torch.zeros(4, 4, 4, dtype=dtype)
    maps[1] = -2.0  # all negative
    maps[2, 0, 0] = 1.0  # all positive mass inside
    maps[3, 3, 3] = 1.0  # all positive mass outside
    boxes = torch.tensor([[[0, 0, 2, 2]]] * 4)
    assert energy_pointing_game(maps, boxes).tolist() == [0.0, 0.0, 1.0, 0.0]


def test_empty_regions_give_nan():
    maps = random_maps(6, 4, 4, torch.float32, seed=4).abs() + 0.1
    boxes = [
        torch.zeros(0, 4),  # no boxes
        torch.tensor([]),  # no boxes, 1-D empty
        torch.tensor([[2.0, 0.0, 2.0, 4.0]]),  # degenerate
        torch.tensor([[4.0, 0.0, 9.0, 4.0]]),  # outside the image
        torch.tensor([[NAN, NAN, NAN, NAN]]),  # padding only
        torch.tensor([[0.0, 0.0, 1.0, 1.0]]),  # one pixel: valid
    ]
    scores = energy_pointing_game(maps, boxes)
    assert all(math.isnan(s) for s in scores[:5].tolist())
    assert scores[5] == pytest.approx(float(maps[5, 0, 0] / maps[5].sum()))
    all_false = torch.zeros(6, 4, 4, dtype=torch.bool)
    assert torch.isnan(energy_pointing_game(maps, all_false)).all()


def test_a_non_finite_map_with_boxes_gives_nan():
    maps = random_maps(3, 4, 4, torch.float64, seed=6).abs() + 0.1
    maps[0, 3, 3] = NAN
    maps[1, 3, 3] = float("inf")
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    scores = energy_pointing_game(maps, [box, box, box])
    assert math.isnan(scores[0])
    assert math.isnan(scores[1])
    assert scores[2] == pytest.approx(float(maps[2, :2, :2].sum() / maps[2].sum()))


def test_class_equals_functional_accumulates_and_counts():
    maps = random_maps(8, 5, 7, torch.float64, seed=5)
    maps[2, 1, 1] = NAN
    boxes = [torch.tensor(BOX_SETS[i % 4], dtype=torch.float64) for i in range(8)]
    boxes[5] = torch.zeros(0, 4)  # empty
    boxes[2] = torch.zeros(0, 4)  # empty and NaN: counted as NaN only
    scores = energy_pointing_game(maps, boxes)
    included = [0, 1, 3, 4, 6, 7]

    whole = EnergyPointingGame().set_dtype(torch.float64)
    with pytest.warns(UserWarning, match="1 of 8 attribution maps"):
        whole.update(maps, boxes)
    parts = EnergyPointingGame().set_dtype(torch.float64)
    with pytest.warns(UserWarning, match="1 of 3 attribution maps"):
        parts.update(maps[:3], boxes[:3])
    parts.update(maps[3:], boxes[3:])
    for metric in (whole, parts):
        torch.testing.assert_close(metric.compute(), scores[included].mean())
        torch.testing.assert_close(metric.per_sample_scores(), scores[included])
        assert (int(metric.num_nan), int(metric.num_empty), int(metric.count)) == (1, 1, 6)


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        ([torch.zeros(1, 4)], r"`boxes`: expected 2 box tensors, received 1"),
        ([torch.zeros(1, 4), torch.zeros(1, 3)], r"`boxes\[1\]`: expected a real \(n, 4\)"),
        ([torch.zeros(1, 4), [0, 0, 1, 1]], r"`boxes\[1\]`: .* received list"),
        (torch.zeros(2, 1, 5), r"`boxes`: expected a list of B \(n_i, 4\) tensors"),
        (torch.zeros(3, 1, 4), r"B=2, received a torch.float32 tensor of shape \(3, 1, 4\)"),
        (torch.zeros(2, 4), r"`boxes`: expected .* shape \(2, 4\)"),
        (torch.zeros(2, 4, 5, dtype=torch.bool), r"bool mask of shape \(2, 4, 4\)"),
        ("boxes", r"`boxes`: expected .* received str"),
    ],
)
def test_bad_boxes(boxes, match):
    with pytest.raises(BadInputError, match=match):
        energy_pointing_game(torch.rand(2, 4, 4), boxes)


@pytest.mark.parametrize(
    ("maps", "match"),
    [
        (torch.rand(2, 1, 4, 4), r"`attributions`: expected a floating-point tensor of shape"),
        (torch.ones(2, 4, 4, dtype=torch.int32), r"received a torch.int32 tensor"),
    ],
)
def test_bad_maps(maps, match):
    with pytest.raises(BadInputError, match=match):
        energy_pointing_game(maps, torch.zeros(2, 1, 4))
