"""The probe is validation data, and choosing it changes no random stream (issue 15, item 4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    Sampler,
    Subset,
    SubsetRandomSampler,
)

from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._probe import select_probe
from tests.callbacks.helpers import (
    FAST,
    VAL_PART,
    BoxedImages,
    TinyClassifier,
    assert_probe_is_the_validation_part,
    assert_same,
    trainer,
)


class _Chosen(Sampler[int]):
    """A user's sampler over some indices with no `.indices` attribute."""

    def __init__(self, keep: list[int]) -> None:
        self.keep = keep

    def __iter__(self) -> Iterator[int]:
        return iter(reversed(self.keep))

    def __len__(self) -> int:
        return len(self.keep)


class _Pairs(Sampler[list[int]]):
    """A user's batch sampler (not a `BatchSampler`): pairs of validation indices."""

    def __iter__(self) -> Iterator[list[int]]:
        return iter([VAL_PART[i : i + 2] for i in range(0, len(VAL_PART), 2)])

    def __len__(self) -> int:
        return len(VAL_PART) // 2


@pytest.mark.parametrize(
    "make_loader",
    [
        lambda data: DataLoader(data, batch_size=4, sampler=VAL_PART),
        lambda data: DataLoader(data, batch_size=4, sampler=_Chosen(VAL_PART)),
        lambda data: DataLoader(
            data, sampler=SubsetRandomSampler(VAL_PART, torch.Generator().manual_seed(1))
        ),
        lambda data: DataLoader(
            data, batch_sampler=BatchSampler(_Chosen(VAL_PART), 4, drop_last=False)
        ),
        lambda data: DataLoader(data, batch_sampler=_Pairs()),
    ],
    ids=["list", "custom_sampler", "SubsetRandomSampler", "BatchSampler", "custom_batch_sampler"],
)
def test_the_probe_comes_from_what_the_validation_loader_yields(
    make_loader: Callable[[BoxedImages], DataLoader],
) -> None:
    assert_probe_is_the_validation_part(make_loader)


def test_a_subset_of_a_shared_dataset_gives_only_its_images() -> None:
    data = BoxedImages(30, 1)
    probe = select_probe(DataLoader(Subset(data, VAL_PART), batch_size=4), 50, seed=0)
    validation = data.images[VAL_PART]
    assert len(probe) == len(VAL_PART)
    for image in probe.images:
        assert any(torch.equal(image, candidate) for candidate in validation)


def _global_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].copy()}


@pytest.mark.parametrize(
    "make_loader",
    [
        lambda data, g: DataLoader(data, batch_size=4, shuffle=True, generator=g),
        lambda data, g: DataLoader(data, sampler=SubsetRandomSampler(VAL_PART, generator=g)),
        lambda data, g: DataLoader(_Stream(), batch_size=4, generator=g),
    ],
    ids=["shuffled_loader", "SubsetRandomSampler", "iterable_dataset"],
)
def test_choosing_the_probe_leaves_every_generator_as_it_was(
    make_loader: Callable[[Any, torch.Generator], DataLoader],
) -> None:
    shared = torch.Generator().manual_seed(5)
    loader = make_loader(BoxedImages(30, 1), shared)
    before, generator_before = _global_states(), shared.get_state()
    select_probe(loader, 6, seed=0)
    assert_same(_global_states(), before)
    assert torch.equal(shared.get_state(), generator_before)


class _Stream(IterableDataset):
    def __iter__(self) -> Iterator[Any]:
        data = BoxedImages(16, 2)
        for index in range(len(data)):
            yield data[index]


def _fit_with_shared_generator(root: Path, callbacks: list[Any]) -> dict[str, Any]:
    pl.seed_everything(0, verbose=False)
    shared = torch.Generator().manual_seed(7)
    train = DataLoader(BoxedImages(24, 0), batch_size=4, shuffle=True, generator=shared)
    val = DataLoader(_Stream(), batch_size=4, generator=shared)
    model = TinyClassifier()
    trainer(root, callbacks, max_epochs=2, limit_train_batches=None).fit(model, train, val)
    return {"seen": torch.cat(model.seen), "weights": dict(model.state_dict())}


@pytest.mark.slow
def test_a_generator_shared_by_an_iterable_validation_loader_and_training_is_untouched(
    tmp_path: Path,
) -> None:
    without = _fit_with_shared_generator(tmp_path / "without", [])
    monitor = AttributionMonitor(
        methods=["gradient"], metrics=["deletion_auc"], **(FAST | {"num_images": 4})
    )
    with_monitor = _fit_with_shared_generator(tmp_path / "with", [monitor])
    assert len(monitor.history) == 2
    assert_same(without, with_monitor)
