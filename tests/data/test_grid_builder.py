"""make_grids / max_grids: cell contents and positions, distinct classes, seeds, empty results."""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

from dave_lightning import DAVE
from dave_lightning.data import GridBatch, SyntheticShapes, make_grids, max_grids
from dave_lightning.errors import BadInputError, ConfigurationError


def random_batch(
    count: int = 12, height: int = 16, width: int = 24, classes: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(count, 3, height, width, generator=generator)
    return images, torch.arange(count) % classes


def pil_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear downscaling by Pillow, channel by channel (the reference)."""
    channels = [
        np.asarray(
            Image.fromarray(channel.numpy()).resize((width, height), Image.Resampling.BILINEAR)
        )
        for channel in image
    ]
    return torch.from_numpy(np.stack(channels))


def cell(grids: GridBatch, g: int, index: int) -> torch.Tensor:
    """Cell ``index`` (row-major) of grid ``g``, cut out by plain slicing."""
    n = grids.grid_size
    height, width = grids.images.shape[-2] // n, grids.images.shape[-1] // n
    row, column = divmod(index, n)
    return grids.images[
        g, :, row * height : (row + 1) * height, column * width : (column + 1) * width
    ]


@pytest.mark.parametrize(
    ("grid_size", "output_size", "cell_size"),
    [(2, None, (8, 12)), (2, (12, 20), (6, 10)), (3, 15, (5, 5))],
)
def test_cells_hold_the_downscaled_sources_in_row_major_order(
    grid_size: int, output_size: int | tuple[int, int] | None, cell_size: tuple[int, int]
) -> None:
    images, labels = random_batch(count=20, classes=grid_size**2 + 1)
    grids = make_grids(images, labels, grid_size, output_size=output_size, seed=1)
    assert len(grids) == max_grids(labels, grid_size) > 0
    assert grids.images.shape[-2:] == (cell_size[0] * grid_size, cell_size[1] * grid_size)
    for g in range(len(grids)):
        for index in range(grid_size**2):
            source = images[grids.source_indices[g, index]]
            torch.testing.assert_close(
                cell(grids, g, index), pil_resize(source, *cell_size), atol=1e-5, rtol=0
            )


def test_full_resolution_places_the_sources_unchanged() -> None:
    images, labels = random_batch()
    grids = make_grids(images, labels, full_resolution=True, seed=2)
    assert grids.images.shape == (len(grids), 3, 32, 48)
    for g in range(len(grids)):
        for index in range(4):
            assert torch.equal(cell(grids, g, index), images[grids.source_indices[g, index]])
    model = VisionTransformer(
        img_size=(16, 24),
        patch_size=8,
        embed_dim=32,
        depth=1,
        num_heads=2,
        num_classes=5,
        dynamic_img_size=True,
    )
    assert model(grids.images).shape == (len(grids), 5)


def test_grids_use_distinct_classes_and_never_reuse_an_image() -> None:
    dataset = SyntheticShapes("val", length=30, image_size=32)
    images = torch.stack([dataset[i][0] for i in range(30)])
    labels = torch.tensor([dataset[i][1] for i in range(30)])
    grids = make_grids(images, labels, grid_size=2, seed=3)
    assert len(grids) == 7  # 30 images of 6 balanced classes: 28 fill 7 grids
    assert torch.equal(grids.cell_labels, labels[grids.source_indices])
    for row in grids.cell_labels.tolist():
        assert len(set(row)) == 4
    used = grids.source_indices.flatten().tolist()
    assert len(used) == len(set(used))
    assert grids.reason is None
    assert grids.num_eligible == 30


def brute_force_max_grids(labels: list[int], cells: int) -> int:
    """Try every way to take grids of ``cells`` distinct labels (small inputs only)."""
    if len(labels) < cells:
        return 0
    best = brute_force_max_grids(labels[1:], cells)  # the first image is never used
    for others in combinations(range(1, len(labels)), cells - 1):
        chosen = (0, *others)
        if len({labels[i] for i in chosen}) == cells:
            rest = [label for i, label in enumerate(labels) if i not in chosen]
            best = max(best, 1 + brute_force_max_grids(rest, cells))
    return best


def test_max_grids_matches_an_exhaustive_search() -> None:
    rng = np.random.default_rng(0)
    cases = [([0, 0, 0, 0, 1, 2, 3, 3], 2), ([], 2), ([0, 1, 2, 3, 4, 5, 6, 7, 8, 0], 3)]
    cases += [(rng.integers(0, 5, size=int(rng.integers(0, 10))).tolist(), 2) for _ in range(40)]
    for labels, grid_size in cases:
        expected = brute_force_max_grids(labels, grid_size**2)
        assert max_grids(torch.tensor(labels, dtype=torch.long), grid_size) == expected, labels
        images = torch.zeros(len(labels), 1, 6, 6)
        grids = make_grids(
            images, torch.tensor(labels, dtype=torch.long), grid_size, on_empty="ignore"
        )
        assert len(grids) == expected


def test_num_grids_is_an_upper_bound() -> None:
    images, labels = random_batch(count=20)
    assert len(make_grids(images, labels, num_grids=2)) == 2
    assert len(make_grids(images, labels, num_grids=50)) == max_grids(labels) == 5


def test_a_seed_fixes_the_grids_and_leaves_the_global_rng_alone() -> None:
    images, labels = random_batch(count=20)
    state = torch.get_rng_state()
    first = make_grids(images, labels, seed=4, cells_per_grid=2)
    assert torch.equal(torch.get_rng_state(), state)
    again = make_grids(images, labels, seed=4, cells_per_grid=2)
    other = make_grids(images, labels, seed=5, cells_per_grid=2)
    assert len(make_grids(images, labels, seed=-(2**63))) == len(first)  # any int seeds
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.source_indices, again.source_indices)
    assert torch.equal(first.explain_cells, again.explain_cells)
    assert not torch.equal(first.source_indices, other.source_indices)


def test_cells_to_explain_and_their_targets() -> None:
    images, labels = random_batch(count=40)
    every = make_grids(images, labels)
    assert torch.equal(every.explain_cells, torch.arange(4).expand(len(every), 4))
    assert torch.equal(every.targets, every.cell_labels)
    some = make_grids(images, labels, cells_per_grid=2, seed=6)
    assert some.explain_cells.shape == (len(some), 2)
    assert (some.explain_cells[:, 0] < some.explain_cells[:, 1]).all()  # distinct, ascending
    assert set(some.explain_cells.flatten().tolist()) == {0, 1, 2, 3}
    for g in range(len(some)):
        for k, index in enumerate(some.explain_cells[g].tolist()):
            assert some.targets[g, k] == some.cell_labels[g, index]


def test_targets_feed_an_attributor_directly() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=5
    )
    images, labels = random_batch(count=8, height=32, width=32)
    grids = make_grids(images, labels, cells_per_grid=3)
    maps = DAVE(model, num_samples=2).attribute(grids.images, grids.targets)
    assert maps.shape == (len(grids), 3, 32, 32)


def test_too_few_classes_give_an_empty_batch_with_a_reason() -> None:
    images = torch.randn(6, 3, 8, 8)
    grids = make_grids(images, torch.tensor([0, 1, 2, 0, 1, 2]), on_empty="ignore")
    assert len(grids) == 0
    assert grids.images.shape == (0, 3, 8, 8)
    assert grids.cell_labels.shape == grids.source_indices.shape == (0, 4)
    assert grids.explain_cells.shape == grids.targets.shape == (0, 4)
    assert grids.reason == (
        "no 2x2 grid can be formed: it needs 4 distinct classes, and the 6 images span 3"
    )
    empty = make_grids(
        torch.zeros(0, 3, 9, 9), torch.zeros(0, dtype=torch.long), 3, on_empty="ignore"
    )
    assert len(empty) == 0
    assert "needs 9 distinct classes" in str(empty.reason)


def test_too_few_classes_warn_with_the_reason_by_default() -> None:
    images = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match=r"needs 4 distinct classes, and the 2 images span 2"):
        grids = make_grids(images, torch.tensor([0, 1]))
    assert len(grids) == 0


def test_too_few_classes_raise_the_reason_on_request() -> None:
    with pytest.raises(BadInputError, match=r"needs 4 distinct classes, and the 2 images span 2"):
        make_grids(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), on_empty="raise")


def test_enough_classes_neither_warn_nor_raise() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grids = make_grids(torch.randn(4, 3, 8, 8), torch.arange(4), on_empty="raise")
    assert len(grids) == 1


def test_an_unknown_on_empty_is_refused() -> None:
    with pytest.raises(BadInputError, match=r"`on_empty`: expected one of 'warn', 'raise'"):
        make_grids(torch.randn(4, 3, 8, 8), torch.arange(4), on_empty="loud")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(images=torch.zeros(4, 8, 8)), BadInputError, r"`images`: expected a floating"),
        (dict(images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8)), BadInputError, r"`images`"),
        (dict(labels=torch.arange(3)), BadInputError, r"`labels`: expected a \(4,\) integer"),
        (dict(labels=torch.zeros(4)), BadInputError, r"`labels`: expected a \(4,\) integer"),
        (dict(labels=torch.tensor([0, 1, 2, -1])), BadInputError, r"non-negative"),
        (dict(grid_size=1), BadInputError, r"`grid_size`: expected an integer >= 2"),
        (dict(num_grids=0), BadInputError, r"`num_grids`: expected an integer >= 1"),
        (dict(cells_per_grid=5), BadInputError, r"`cells_per_grid`: expected at most 4"),
        (dict(cells_per_grid=0), BadInputError, r"`cells_per_grid`: expected an integer >= 1"),
        (dict(output_size=(8, 9)), BadInputError, r"`output_size`: .*divide by grid_size=2"),
        (dict(images=torch.zeros(4, 3, 9, 8)), BadInputError, r"`images`: .*divide by"),
        (dict(seed=0.5), BadInputError, r"`seed`: expected an integer"),
        (dict(batch_size=0), BadInputError, r"`batch_size`: expected an integer >= 1"),
        (dict(min_confidence=0.5), ConfigurationError, r"`min_confidence`: expected None when"),
        (dict(full_resolution=True, output_size=8), ConfigurationError, r"`output_size`"),
        (dict(model="vit"), BadInputError, r"`model`: expected a torch.nn.Module"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments: dict[str, Any] = dict(images=torch.zeros(4, 3, 8, 8), labels=torch.arange(4))
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        make_grids(**arguments)
