from __future__ import annotations

import cmath
import math

import matplotlib
import pytest
import torch

from dave_lightning.errors import BadInputError
from dave_lightning.metrics import PatchArtifactScore
from dave_lightning.metrics.functional import patch_artifact_chance_level, patch_artifact_score

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-6, torch.float64: 1e-12}


def ref_patch_artifact(map_2d: torch.Tensor, patch_h: int, patch_w: int) -> float:
    """The definition, literally: an explicit float64 DFT by sums, then a loop over the lattice."""
    values = map_2d.double().tolist()
    h, w = len(values), len(values[0])
    tw_w = [[cmath.exp(-2j * math.pi * v * x / w) for x in range(w)] for v in range(w)]
    tw_h = [[cmath.exp(-2j * math.pi * u * y / h) for y in range(h)] for u in range(h)]
    rows = [[sum(r[x] * t[x] for x in range(w)) for t in tw_w] for r in values]
    spectrum = [
        [sum(rows[y][v] * tw_h[u][y] for y in range(h)) for v in range(w)] for u in range(h)
    ]
    energy = [[abs(z) ** 2 for z in row] for row in spectrum]
    total = sum(map(sum, energy)) - energy[0][0]
    on_lattice = 0.0
    for k in range(patch_h):
        for j in range(patch_w):
            if (k, j) != (0, 0):
                on_lattice += energy[k * h // patch_h][j * w // patch_w]
    return on_lattice / total if total > 0 else math.nan


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def mode(height: int, width: int, u: int, v: int, phase: float) -> torch.Tensor:
    """cos(2π(u·y/H + v·x/W) + phase): its energy sits on frequencies ±(u, v) only."""
    y = torch.arange(height, dtype=torch.float64)[:, None]
    x = torch.arange(width, dtype=torch.float64)[None, :]
    return torch.cos(2 * math.pi * (u * y / height + v * x / width) + phase)


def as_pair(patch: int | tuple[int, int]) -> tuple[int, int]:
    return patch if isinstance(patch, tuple) else (patch, patch)


def tiled(tile: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return tile.repeat(1, height // tile.shape[-2], width // tile.shape[-1])


CASES = [((8, 12), 4), ((16, 24), 8), ((16, 32), 16), ((16, 16), (4, 8)), ((12, 8), (2, 4))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "patch"), CASES)
def test_functional_matches_the_explicit_dft(dtype, shape, patch):
    patch_h, patch_w = as_pair(patch)
    pattern = tiled(randn(1, patch_h, patch_w, seed=1), *shape)
    maps = (randn(4, *shape) + torch.arange(4.0)[:, None, None] * pattern).to(dtype)
    scores = patch_artifact_score(maps, patch_size=patch)
    expected = [ref_patch_artifact(m, patch_h, patch_w) for m in maps]
    assert scores.dtype == dtype
    assert scores.shape == (4,)
    torch.testing.assert_close(
        scores.double(), torch.tensor(expected, dtype=torch.float64), atol=TOL[dtype], rtol=0
    )
    assert expected[3] > expected[0]  # the tiled pattern is what the score sees


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("patch", [4, 8, 16, (4, 8), (16, 2)])
def test_a_pure_patch_periodic_map_scores_one(dtype, patch):
    tile = randn(3, *as_pair(patch), seed=2)
    maps = (tiled(tile, 32, 48) + 5.0).to(dtype)  # any tile, plus a constant
    torch.testing.assert_close(
        patch_artifact_score(maps, patch), torch.ones(3, dtype=dtype), atol=TOL[dtype], rtol=0
    )


@pytest.mark.parametrize("patch", [4, 8, (4, 8)])
def test_maps_constant_inside_every_patch_score_zero(patch):
    patch_h, patch_w = as_pair(patch)
    coarse = randn(3, 32 // patch_h, 48 // patch_w, seed=3)
    blocks = coarse.repeat_interleave(patch_h, 1).repeat_interleave(patch_w, 2)
    torch.testing.assert_close(
        patch_artifact_score(blocks, patch), torch.zeros(3, dtype=torch.float64)
    )
    assert ref_patch_artifact(blocks[0], patch_h, patch_w) < 1e-20  # the DFT agrees


def test_a_smooth_blob_scores_far_below_chance():
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = torch.exp(-((y - 15.5) ** 2 + (x - 13.0) ** 2) / (2 * 6.0**2))[None].double()
    score = float(patch_artifact_score(blob, 8))
    assert score == pytest.approx(ref_patch_artifact(blob[0], 8, 8), abs=1e-12)
    assert score < 0.01 * patch_artifact_chance_level(32, 32, 8)  # 9e-5 vs 0.06


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("patch", [4, 8, 16, (4, 8)])
def test_a_mix_of_disjoint_modes_has_its_closed_form_score(dtype, patch):
    height, width = 32, 48
    n_h, n_w = height // as_pair(patch)[0], width // as_pair(patch)[1]
    # Each mode carries amplitude² · HW / 2 (no mode is its own conjugate), on disjoint frequencies.
    periodic = [((n_h, 0), 1.0), ((n_h, -n_w), 0.5)]  # on the lattice
    smooth = [((1, 0), 2.0), ((0, 1), 1.0), ((2, -1), 0.5)]  # off it
    phases = iter([0.3, 1.1, -0.7, 2.0, 0.9])
    map_2d = sum(amp * mode(height, width, u, v, next(phases)) for (u, v), amp in periodic + smooth)
    expected = (1.0 + 0.25) / (1.0 + 0.25 + 4.0 + 1.0 + 0.25)
    score = patch_artifact_score(map_2d[None].to(dtype), patch)
    torch.testing.assert_close(
        score, torch.tensor([expected], dtype=dtype), atol=TOL[dtype] * 4, rtol=0
    )


@pytest.mark.parametrize(("shape", "patch"), [((16, 16), 4), ((12, 8), (4, 2))])
def test_white_noise_scores_the_chance_level_on_average(shape, patch):
    patch_h, patch_w = as_pair(patch)
    lattice, pixels = patch_h * patch_w, shape[0] * shape[1]
    chance = patch_artifact_chance_level(*shape, patch)
    assert chance == (lattice - 1) / (pixels - 1)
    # Gaussian noise of any mean and spread: exactly Beta((P - 1) / 2, (HW - P) / 2).
    alpha, beta = (lattice - 1) / 2, (pixels - lattice) / 2
    variance = alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
    scores = patch_artifact_score(3.0 + 2.0 * randn(4000, *shape, seed=4), patch)
    assert abs(float(scores.mean()) - chance) < 5 * math.sqrt(variance / 4000)
    assert float(scores.var()) == pytest.approx(variance, rel=0.15)


def test_a_large_offset_costs_no_float32_accuracy():
    pattern = tiled(randn(1, 4, 4, seed=11), 16, 24)
    maps = (1e4 + randn(2, 16, 24, seed=12) + pattern).float()  # variation near float32's ulp
    expected = torch.tensor([ref_patch_artifact(m, 4, 4) for m in maps], dtype=torch.float64)
    torch.testing.assert_close(
        patch_artifact_score(maps, 4).double(), expected, atol=TOL[torch.float32], rtol=0
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_invariant_to_circular_shifts_scaling_and_constants(dtype):
    pattern = tiled(randn(1, 4, 8, seed=5), 16, 24)
    maps = (randn(3, 16, 24, seed=6) + pattern).to(dtype)
    score = patch_artifact_score(maps, (4, 8))
    changed = {
        "shifted": torch.roll(maps, shifts=(3, 5), dims=(1, 2)),
        "negated and scaled": -7.5 * maps,
        "huge": maps * 1e30,
        "tiny": maps * 1e-30,
        "offset": maps + 100.0,
    }
    for name, other in changed.items():
        torch.testing.assert_close(
            patch_artifact_score(other, (4, 8)), score, atol=TOL[dtype] * 10, rtol=0, msg=name
        )
    transposed = patch_artifact_score(maps.mT, (8, 4))
    torch.testing.assert_close(transposed, score, atol=TOL[dtype], rtol=0)
    assert not torch.allclose(patch_artifact_score(maps, (8, 4)), score)  # orientation matters


def test_patch_as_big_as_the_map_a_single_pixel_and_an_empty_batch():
    maps = randn(2, 8, 12, seed=7)
    assert patch_artifact_score(maps, (8, 12)).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    assert patch_artifact_score(maps, 1).tolist() == [0.0, 0.0]
    torch.testing.assert_close(patch_artifact_score(maps, 4), patch_artifact_score(maps, (4, 4)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_and_non_finite_maps_give_nan_without_touching_others(dtype):
    maps = randn(6, 8, 8, seed=8, dtype=dtype)
    clean = patch_artifact_score(maps, 4)
    maps[1] = 0.0
    maps[2] = 0.1  # its mean may round: found exactly, not through a variance of zero
    maps[3, 2, 5] = float("nan")
    maps[4] = float("inf")
    maps[5] = 0.1
    maps[5, 7, 7] = 0.1 + 1e-3  # nearly constant is a map like any other
    scores = patch_artifact_score(maps, 4)
    assert scores[0] == clean[0]
    assert all(math.isnan(s) for s in scores[1:5].tolist())
    assert 0 < scores[5] < 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_maps_are_scored_in_float32(dtype):
    maps = randn(3, 8, 16, seed=9) + tiled(randn(1, 4, 4, seed=10), 8, 16)
    scores = patch_artifact_score(maps.to(dtype), 4)
    assert scores.dtype == dtype
    expected = patch_artifact_score(maps.to(dtype).double(), 4)
    torch.testing.assert_close(scores.double(), expected, atol=1e-2, rtol=0)


def test_an_empty_batch_gives_no_scores():
    assert patch_artifact_score(torch.zeros(0, 8, 8), 4).shape == (0,)


@pytest.mark.parametrize(
    ("maps", "options", "match"),
    [
        (torch.rand(8, 8), {}, r"`maps`: expected a floating-point tensor of shape \(B, H, W\)"),
        (torch.ones(1, 8, 8, dtype=torch.long), {"patch_size": 4}, r"received a torch.int64"),
        (torch.rand(1, 8, 10), {"patch_size": 4}, r"multiples of patch_size=4, .*width 10"),
        (torch.rand(1, 6, 8), {"patch_size": (4, 4)}, r"multiples of patch_size=4, .*height 6"),
        (torch.rand(1, 8, 8), {"patch_size": (2, 3)}, r"patch_size=\(2, 3\)"),
        (torch.rand(1, 8, 8), {}, r"multiples of patch_size=16, received height 8"),
        (torch.rand(1, 0, 8), {"patch_size": 4}, r"positive multiples"),
        (torch.rand(1, 8, 8), {"patch_size": 0}, r"`patch_size`: expected an integer >= 1"),
        (torch.rand(1, 8, 8), {"patch_size": 2.0}, r"`patch_size`: .* received float 2.0"),
        (torch.rand(1, 8, 8), {"patch_size": (2, -1)}, r"`patch_size\[1\]`: .* >= 1"),
        (torch.rand(1, 8, 8), {"patch_size": (2, 2, 2)}, r"a \(height, width\) pair"),
    ],
)
def test_bad_inputs(maps, options, match):
    with pytest.raises(BadInputError, match=match):
        patch_artifact_score(maps, **options)
    with pytest.raises(BadInputError, match=match):  # the class: at construction or update
        PatchArtifactScore(**options).update(maps)


def test_the_chance_level_checks_its_arguments():
    with pytest.raises(BadInputError, match=r"`height`: expected an integer >= 1"):
        patch_artifact_chance_level(0, 8, 4)
    with pytest.raises(BadInputError, match=r"multiples of patch_size=4, .*width 6"):
        patch_artifact_chance_level(8, 6, 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_equals_functional_and_accumulates(dtype):
    maps = (randn(10, 8, 12, seed=13) + tiled(randn(1, 4, 4, seed=14), 8, 12)).to(dtype)
    expected = patch_artifact_score(maps, 4)
    whole = PatchArtifactScore(patch_size=4).set_dtype(dtype)
    whole.update(maps)
    parts = PatchArtifactScore(patch_size=4).set_dtype(dtype)
    for chunk in (slice(0, 3), slice(3, 4), slice(4, 10)):
        parts.update(maps[chunk])
    for metric in (whole, parts):
        torch.testing.assert_close(metric.compute(), expected.mean(), atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(metric.per_sample_scores(), expected)
        assert (int(metric.count), int(metric.num_nan), int(metric.num_constant)) == (10, 0, 0)


def test_forward_returns_the_batch_value_and_accumulates():
    maps = randn(8, 8, 8, seed=15) + tiled(randn(1, 2, 2, seed=16), 8, 8)
    metric = PatchArtifactScore(patch_size=2).set_dtype(torch.float64)
    first, second = metric(maps[:5]), metric(maps[5:])
    expected = patch_artifact_score(maps, 2)
    torch.testing.assert_close(first, expected[:5].mean())
    torch.testing.assert_close(second, expected[5:].mean())
    torch.testing.assert_close(metric.compute(), expected.mean())


def test_class_excludes_and_counts_constant_and_non_finite_maps():
    maps = randn(6, 8, 8, seed=17, dtype=torch.float32)
    maps[1] = 2.0
    maps[2, 3, 1] = float("nan")
    maps[3] = float("inf")  # all equal, but not finite: counted as NaN
    maps[5] = 0.0
    metric = PatchArtifactScore(patch_size=4)
    with pytest.warns(UserWarning, match="2 of 6 attribution maps contain NaN"):
        metric.update(maps)
    expected = patch_artifact_score(maps[[0, 4]], 4)
    torch.testing.assert_close(metric.compute(), expected.mean())
    torch.testing.assert_close(metric.per_sample_scores(), expected)
    assert (int(metric.num_nan), int(metric.num_constant), int(metric.count)) == (2, 2, 2)
    empty = PatchArtifactScore(patch_size=4)
    empty.update(torch.zeros(3, 8, 8))
    assert math.isnan(empty.compute())
    assert int(empty.num_constant) == 3


def test_class_contract_and_the_plot_with_the_white_noise_level():
    metric = PatchArtifactScore(patch_size=(4, 2))
    assert metric.patch_size == (4, 2)
    flags = (metric.higher_is_better, metric.is_differentiable, metric.full_state_update)
    assert flags == (False, False, False)
    assert (metric.plot_lower_bound, metric.plot_upper_bound) == (0.0, 1.0)
    reductions = {name: fn.__name__[9:] for name, fn in metric._reductions.items()}
    sums = ["score_sum", "count", "num_nan", "num_constant", "chance_sum"]
    assert reductions == {**dict.fromkeys(sums, "sum"), "scores": "cat"}
    metric.update(randn(6, 16, 16, seed=18).float())
    metric.update(randn(2, 8, 12, seed=19).float())  # maps of two sizes: their mean chance level
    chance = (6 * 7 / 255 + 2 * 7 / 95) / 8
    fig, ax = metric.plot()
    assert sum(patch.get_height() for patch in ax.patches) == 8
    assert ax.get_xlabel() == "score (lower is better)"
    assert [line.get_xdata()[0] for line in ax.get_lines()][1] == pytest.approx(chance)
    plt.close(fig)
    fig, ax = metric.plot([metric.compute(), metric.compute() / 2])  # values over steps
    assert len(ax.get_lines()[0].get_ydata()) == 2
    plt.close(fig)
