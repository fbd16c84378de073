"""Batch parsing and the deterministic choice of the probe set."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    Sampler,
    SubsetRandomSampler,
)

from dave_lightning import BadInputError
from dave_lightning.callbacks._probe import Probe, parse_batch, rank_positions, select_probe
from tests.callbacks.helpers import VAL_PART, BoxedImages, assert_probe_is_the_validation_part

IMAGES, LABELS = torch.rand(3, 3, 8, 8), torch.tensor([2, 0, 1])
BOXES = torch.tensor([[[0.0, 0.0, 4.0, 4.0]], [[1.0, 1.0, 8.0, 8.0]], [[2.0, 0.0, 6.0, 3.0]]])
MASKS = torch.rand(3, 8, 8) > 0.5


@pytest.mark.parametrize(
    ("batch", "has_boxes", "has_masks"),
    [
        ((IMAGES, LABELS), False, False),
        ([IMAGES, LABELS, BOXES], True, False),
        ((IMAGES, LABELS, list(BOXES)), True, False),
        ((IMAGES, LABELS, BOXES[:, 0]), True, False),
        ((IMAGES, LABELS, MASKS), False, True),
        ((IMAGES, LABELS, BOXES, MASKS), True, True),
        ({"images": IMAGES, "labels": LABELS, "boxes": BOXES}, True, False),
        ({"image": IMAGES, "label": LABELS.tolist(), "mask": MASKS}, False, True),
    ],
)
def test_supported_layouts(batch: object, has_boxes: bool, has_masks: bool) -> None:
    images, labels, boxes, masks = parse_batch(batch)
    assert torch.equal(images, IMAGES)
    assert labels.tolist() == [2, 0, 1]
    assert (boxes is not None) == has_boxes
    assert (masks is not None) == has_masks
    if boxes is not None:
        assert [tuple(b.shape) for b in boxes] == [(1, 4)] * 3
        assert torch.equal(torch.stack(boxes), BOXES)


@pytest.mark.parametrize(
    ("batch", "pattern"),
    [
        (IMAGES, r"`batch`: expected a tuple \(images, labels"),
        ((IMAGES,), r"`batch`: expected a tuple"),
        ((IMAGES[0], LABELS), r"`batch images`: expected a \(B, C, H, W\) tensor"),
        (
            (IMAGES, LABELS[:2]),
            r"`batch labels`: expected 3 integer class labels, received shape \(2,\)",
        ),
        ((IMAGES, LABELS.float()), r"`batch labels`"),
        ((IMAGES, LABELS, BOXES[:2]), r"`boxes`: expected boxes for 3 images, received 2"),
        ((IMAGES, LABELS, "boxes"), r"`boxes`: expected a \(B, n, 4\) tensor or a list"),
    ],
)
def test_unreadable_batches_are_explained(batch: object, pattern: str) -> None:
    with pytest.raises(BadInputError, match=pattern):
        parse_batch(batch)


def test_probe_is_a_seeded_subset_chosen_without_touching_the_rng() -> None:
    loader = DataLoader(BoxedImages(30, 1), batch_size=4, shuffle=True)
    state = torch.get_rng_state()
    probe = select_probe(loader, 7, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(probe) == 7
    dataset = loader.dataset
    for position, index in enumerate(probe.indices.tolist()):
        assert torch.equal(probe.images[position], dataset.images[index])
        assert int(probe.labels[position]) == int(dataset.labels[index])
    again = select_probe(loader, 7, seed=3)
    assert torch.equal(again.indices, probe.indices)
    assert not torch.equal(select_probe(loader, 7, seed=4).indices, probe.indices)
    assert len(select_probe(loader, 100, seed=0)) == 30  # fewer when the data has fewer


class _Stream(IterableDataset):
    def __iter__(self):  # type: ignore[no-untyped-def]
        data = BoxedImages(10, 2)
        for index in range(len(data)):
            yield data[index]


def test_iterable_datasets_give_their_first_images_and_shards_partition_the_probe() -> None:
    probe = select_probe(DataLoader(_Stream(), batch_size=4), 6, seed=0)
    assert probe.indices.tolist() == list(range(6))
    assert torch.equal(probe.images, BoxedImages(10, 2).images[:6])
    ranks = [SimpleNamespace(global_rank=rank, world_size=4) for rank in range(4)]
    shards = [probe.select(rank_positions(rank, len(probe))) for rank in ranks]
    assert sorted(i for s in shards for i in s.indices.tolist()) == list(range(6))
    assert shards[1].indices.tolist() == [1, 5]
    assert [tuple(b.shape) for b in shards[1].boxes] == [(1, 4), (1, 4)]
    restored = Probe.from_state(probe.state())
    assert torch.equal(restored.images, probe.images)
    assert restored.boxes is not None


class _SubsetSequential(Sampler[int]):
    """A user's sampler over some indices, in order (anything with `.indices` counts)."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@pytest.mark.parametrize(
    "make_loader",
    [
        lambda data: DataLoader(data, batch_size=4, sampler=SubsetRandomSampler(VAL_PART)),
        lambda data: DataLoader(data, batch_size=4, sampler=_SubsetSequential(VAL_PART)),
        lambda data: DataLoader(
            data, batch_sampler=BatchSampler(_SubsetSequential(VAL_PART), 4, drop_last=False)
        ),
        lambda data: DataLoader(  # what Lightning makes of a custom sampler under DDP
            data,
            batch_size=4,
            sampler=DistributedSamplerWrapper(
                _SubsetSequential(VAL_PART), num_replicas=2, rank=1, shuffle=False
            ),
        ),
    ],
    ids=["SubsetRandomSampler", "custom", "batch_sampler", "lightning_ddp_wrapper"],
)
def test_the_probe_comes_from_the_samplers_indices_only(
    make_loader: Callable[[BoxedImages], DataLoader],
) -> None:
    assert_probe_is_the_validation_part(make_loader)


def test_a_dict_batch_without_a_label_key_names_the_keys_it_has() -> None:
    with pytest.raises(
        BadInputError,
        match=r"`batch`: expected a dict with an image key \(one of images, image, .*\) and a "
        r"label key \(one of labels, label, .*received a dict with keys \['image', 'class_id'\]",
    ):
        parse_batch({"image": IMAGES, "class_id": LABELS})
