"""The seeded random map: reproducible, keyed by (seed, image id, class), model-independent."""

from __future__ import annotations

import pytest
import torch

from dave_lightning.baselines import RandomAttributor
from dave_lightning.errors import BadInputError
from tests.baselines.helpers import random_images
from tests.helpers import tiny_vit


def test_keyed_by_seed_image_id_and_class() -> None:
    images = random_images(3, 3, 32, 32)
    attributor = RandomAttributor(tiny_vit(seed=0), seed=7)
    maps = attributor.attribute(images, torch.tensor([[0, 1], [0, 1], [2, 1]]), image_ids=[5, 6, 7])
    assert maps.shape == (3, 2, 32, 32)
    assert torch.equal(
        maps,
        attributor.attribute(images, torch.tensor([[0, 1], [0, 1], [2, 1]]), image_ids=[5, 6, 7]),
    )
    assert torch.equal(maps[2, 1], attributor.attribute(images[2:], 1, image_ids=[7])[0])
    assert torch.equal(maps[1, 0], attributor.attribute(-images[:1], 0, image_ids=[6])[0])
    assert not torch.equal(maps[0, 0], maps[1, 0])  # image ids differ
    assert not torch.equal(maps[0, 0], maps[0, 1])  # classes differ
    other = RandomAttributor(tiny_vit(seed=0), seed=8).attribute(
        images, torch.tensor([[0, 1], [0, 1], [2, 1]]), image_ids=[5, 6, 7]
    )
    assert not torch.equal(maps, other)


def test_the_model_is_not_run_and_the_dtype_and_channels_follow_the_request() -> None:
    model = tiny_vit(seed=0)
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        maps = RandomAttributor(model).attribute(
            random_images(2, 3, 16, 24, dtype=torch.float64), 4, keep_channels=True
        )
    finally:
        handle.remove()
    assert calls == []
    assert maps.shape == (2, 1, 16, 24)
    assert maps.dtype == torch.float64


@pytest.mark.parametrize(
    ("distribution", "low", "high"), [("uniform", 0.0, 1.0), ("normal", -6.0, 6.0)]
)
def test_distributions(distribution: str, low: float, high: float) -> None:
    maps = RandomAttributor(tiny_vit(seed=0), distribution=distribution).attribute(
        random_images(4, 3, 32, 32), 0
    )
    assert low <= float(maps.min())
    assert float(maps.max()) < high
    assert abs(float(maps.mean()) - (0.5 if distribution == "uniform" else 0.0)) < 0.05
    assert (float(maps.min()) < 0) == (distribution == "normal")


@pytest.mark.parametrize(
    ("options", "match"),
    [({"seed": "0"}, "`seed`: expected an integer"), ({"distribution": "beta"}, "`distribution`")],
)
def test_bad_options_are_named(options: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        RandomAttributor(tiny_vit(seed=0), **options)
