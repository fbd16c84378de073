"""The probe set: a fixed, deterministic sample of validation images the monitor explains."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from dave_lightning.callbacks._training_state import preserved_generators, preserved_rng
from dave_lightning.errors import BadInputError

__all__ = [
    "Probe",
    "loader_indices",
    "parse_batch",
    "probe_still_in",
    "rank_positions",
    "select_probe",
]

_IMAGE_KEYS = ("images", "image", "inputs", "input", "x")
_LABEL_KEYS = ("labels", "label", "targets", "target", "y")
_BATCH_HELP = (
    "a tuple (images, labels[, boxes or mask]), (images, labels, boxes, mask) or a dict with "
    "image(s)/label(s)[/boxes/mask] keys; pass `batch_transform=` to turn other batches into one"
)


@dataclass
class Probe:
    """Probe images with their labels, optional object boxes or masks, and dataset indices.

    Attributes:
        images: ``(N, C, H, W)`` in the model's input space.
        labels: ``(N,)`` int64 class labels.
        indices: ``(N,)`` int64 dataset indices (they key each image's random stream).
        boxes: Per image a ``(n_i, 4)`` float tensor ``x1, y1, x2, y2`` (end-exclusive), or None.
        masks: ``(N, H, W)`` bool object masks, or None.
    """

    images: Tensor
    labels: Tensor
    indices: Tensor
    boxes: list[Tensor] | None = None
    masks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, positions: Sequence[int] | Tensor) -> Probe:
        """The probe restricted to ``positions`` (in order)."""
        index = torch.as_tensor(positions, dtype=torch.long)
        return Probe(
            images=self.images[index],
            labels=self.labels[index],
            indices=self.indices[index],
            boxes=None if self.boxes is None else [self.boxes[int(i)] for i in index],
            masks=None if self.masks is None else self.masks[index],
        )

    def state(self) -> dict[str, Any]:
        """Plain tensors and lists for a checkpoint."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Probe:
        """Rebuild a probe saved with :meth:`state`."""
        values: dict[str, Any] = {field.name: state.get(field.name) for field in fields(cls)}
        return cls(**values)


def rank_positions(trainer: Any, count: int) -> Tensor:
    """This process's share of ``count`` items: positions ``rank, rank + world_size, ...``.

    The one rule by which the probe images, their figure maps and the grids are shared out.

    Example:
        >>> from types import SimpleNamespace
        >>> rank_positions(SimpleNamespace(global_rank=1, world_size=4), 6)
        tensor([1, 5])
    """
    return torch.arange(trainer.global_rank, count, trainer.world_size)


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((mapping[key] for key in keys if key in mapping), None)


def _as_boxes(value: Any, batch: int) -> list[Tensor]:
    if isinstance(value, Tensor) and value.dim() == 2 and value.shape == (batch, 4):
        value = value[:, None]  # one box per image
    if isinstance(value, Tensor) and value.dim() == 3 and value.shape[-1] == 4:
        boxes = list(value.detach().float().cpu())
    elif isinstance(value, list | tuple) and all(isinstance(b, Tensor) for b in value):
        boxes = [b.detach().float().cpu().reshape(-1, 4) for b in value]
    else:
        raise BadInputError.for_argument(
            "boxes", "a (B, n, 4) tensor or a list of (n_i, 4) tensors", type(value).__name__
        )
    if len(boxes) != batch:
        raise BadInputError.for_argument("boxes", f"boxes for {batch} images", f"{len(boxes)}")
    return boxes


def _parts(batch: Any) -> tuple[Any, Any, Any, Any]:
    """(images, labels, boxes, masks) of a batch in one of the supported layouts."""
    if isinstance(batch, Mapping):
        images, labels = _first(batch, _IMAGE_KEYS), _first(batch, _LABEL_KEYS)
        if images is None or labels is None:
            raise BadInputError.for_argument(
                "batch",
                f"a dict with an image key (one of {', '.join(_IMAGE_KEYS)}) and a label key "
                f"(one of {', '.join(_LABEL_KEYS)}); pass `batch_transform=` to rename them",
                f"a dict with keys {[str(key) for key in batch]}",
            )
        masks = _first(batch, ("masks", "mask"))
        return images, labels, batch.get("boxes"), masks
    if isinstance(batch, list | tuple) and len(batch) == 4:
        return batch[0], batch[1], batch[2], batch[3]
    if isinstance(batch, list | tuple) and len(batch) in (2, 3):
        extra = batch[2] if len(batch) == 3 else None
        if isinstance(extra, Tensor) and extra.dtype == torch.bool:
            return batch[0], batch[1], None, extra
        return batch[0], batch[1], extra, None
    raise BadInputError.for_argument("batch", _BATCH_HELP, type(batch).__name__)


def parse_batch(batch: Any) -> tuple[Tensor, Tensor, list[Tensor] | None, Tensor | None]:
    """Split a validation batch into images, labels and optional boxes or masks (all on CPU).

    Args:
        batch: A tuple ``(images, labels)``, ``(images, labels, boxes)``,
            ``(images, labels, mask)`` or ``(images, labels, boxes, mask)``, or a dict with
            ``image(s)``, ``label(s)`` and optional ``boxes``/``mask`` keys.

    Returns:
        ``(images, labels, boxes or None, masks or None)``.

    Raises:
        BadInputError: When the batch has another layout or inconsistent shapes.

    Example:
        >>> import torch
        >>> images, labels, boxes, masks = parse_batch(
        ...     {"image": torch.rand(2, 3, 8, 8), "label": torch.tensor([1, 0]),
        ...      "boxes": torch.tensor([[[0.0, 0.0, 4.0, 4.0]], [[2.0, 2.0, 8.0, 8.0]]])})
        >>> images.shape, labels.tolist(), [tuple(b.shape) for b in boxes], masks
        (torch.Size([2, 3, 8, 8]), [1, 0], [(1, 4), (1, 4)], None)
    """
    images, labels, boxes, masks = _parts(batch)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise BadInputError.for_argument(
            "batch images", "a (B, C, H, W) tensor; " + _BATCH_HELP, type(images).__name__
        )
    batch_size = images.shape[0]
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.shape != (batch_size,) or labels.dtype.is_floating_point:
        raise BadInputError.for_argument(
            "batch labels", f"{batch_size} integer class labels", f"shape {tuple(labels.shape)}"
        )
    if isinstance(masks, Tensor) and masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]  # (B, 1, H, W): one channel
    expected = (batch_size, *images.shape[2:])
    if masks is not None and (not isinstance(masks, Tensor) or tuple(masks.shape) != expected):
        received = (
            f"shape {tuple(masks.shape)}" if isinstance(masks, Tensor) else type(masks).__name__
        )
        raise BadInputError.for_argument(
            "mask", f"a {expected} bool tensor (one mask per image, at the image size)", received
        )
    return (
        images.detach().cpu().clone(),
        labels.detach().cpu().long().clone(),
        None if boxes is None else _as_boxes(boxes, batch_size),
        None if masks is None else masks.detach().cpu().bool().clone(),
    )


def _collate(loader: DataLoader, samples: list[Any]) -> Any:
    collate = loader.collate_fn
    return collate(samples) if collate is not None else samples


def _whole_dataset(sampler: Any) -> bool:
    """Samplers known to yield every dataset index once (no need to iterate them)."""
    if type(sampler) is SequentialSampler:
        return True
    return (
        type(sampler) is RandomSampler
        and not sampler.replacement
        and (sampler._num_samples is None)
    )


def _unwrap_distributed(sampler: Any) -> Any:
    """The sampler every process shares, behind Lightning's and torch's distributed samplers.

    Under DDP each process's loader yields only its shard; the probe must be the same set on
    every process, so it is drawn from what the undivided sampler yields. Returns ``None`` for
    a plain ``DistributedSampler`` (Lightning's replacement of a sequential or random sampler:
    the whole dataset).
    """
    if not isinstance(sampler, DistributedSampler):
        return sampler
    # Lightning's DistributedSamplerWrapper keeps the user's sampler as `dataset._sampler`
    return getattr(sampler.dataset, "_sampler", None)


def _yielded(iterable: Any, limit: int) -> list[int]:
    """The first ``limit`` items of a sampler, batches flattened into indices."""
    indices: list[int] = []
    for item in iterable:
        indices += (
            [int(i) for i in item] if isinstance(item, list | tuple | Tensor) else [int(item)]
        )
        if len(indices) >= limit:
            break
    return indices


def loader_indices(loader: DataLoader) -> Tensor:
    """The sorted dataset indices a map-style validation loader yields, each once.

    Iterates the loader's batch sampler (or its sampler), so a plain list of indices, a custom
    ``Sampler`` or ``batch_sampler``, ``SubsetRandomSampler`` or a sampler over a dataset shared
    with training contribute exactly their own indices. Iterating may draw random numbers: call
    it inside :func:`~dave_lightning.callbacks._training_state.preserved_rng` and
    :func:`~dave_lightning.callbacks._training_state.preserved_generators`.
    """
    size = len(loader.dataset)  # type: ignore[arg-type]
    sampler: Any = loader.sampler
    batch_sampler = getattr(loader, "batch_sampler", None)
    custom_batches = False
    if batch_sampler is not None and getattr(batch_sampler, "sampler", None) is not sampler:
        # the user's batch_sampler (DataLoader's own wraps `loader.sampler`)
        custom_batches = type(batch_sampler) is not BatchSampler
        sampler = batch_sampler if custom_batches else batch_sampler.sampler
    source = sampler if custom_batches else _unwrap_distributed(sampler)
    if source is None or _whole_dataset(source):
        return torch.arange(size)
    limit = len(source) if hasattr(source, "__len__") else size
    limit = limit * getattr(source, "batch_size", size) if custom_batches else limit
    return torch.tensor(sorted(set(_yielded(source, max(limit, 1)))), dtype=torch.long)


def _by_index(loader: DataLoader, count: int, seed: int) -> tuple[Any, Tensor]:
    allowed = loader_indices(loader)
    generator = torch.Generator().manual_seed(seed)
    indices = allowed[torch.randperm(len(allowed), generator=generator)[: min(count, len(allowed))]]
    samples = [loader.dataset[int(i)] for i in indices]
    return _collate(loader, samples), indices


_Parsed = tuple[Tensor, Tensor, list[Tensor] | None, Tensor | None]


def _by_iteration(loader: DataLoader, count: int, transform: Callable[[Any], Any]) -> _Parsed:
    parts: list[_Parsed] = []
    for batch in loader:
        parts.append(parse_batch(transform(batch)))
        if sum(len(part[1]) for part in parts) >= count:
            break
    if not parts:
        raise BadInputError.for_argument("val_dataloader", "at least one batch", "an empty loader")
    boxes = [part[2] for part in parts]
    masks = [part[3] for part in parts]
    return (
        torch.cat([part[0] for part in parts]),
        torch.cat([part[1] for part in parts]),
        None if any(b is None for b in boxes) else [box for b in boxes for box in b or []],
        None if any(m is None for m in masks) else torch.cat([m for m in masks if m is not None]),
    )


def _rng_owners(loader: DataLoader) -> list[Any]:
    """The loader and every sampler inside it (each may hold a ``generator``)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    samplers = [getattr(loader, "sampler", None), batch_sampler]
    samplers.append(getattr(batch_sampler, "sampler", None))
    samplers += [getattr(getattr(s, "dataset", None), "_sampler", None) for s in samplers]
    return [loader, *(s for s in samplers if s is not None)]


def select_probe(
    loader: DataLoader,
    num_images: int,
    seed: int,
    batch_transform: Callable[[Any], Any] | None = None,
) -> Probe:
    """Choose the probe set once, deterministically, from a validation loader.

    A map-style dataset: a seeded random subset of ``num_images`` of the indices the loader's
    sampler (or batch sampler) yields, sorted (so the sampler's order is irrelevant and every
    process picks the same set), collated with the loader's ``collate_fn``. A plain list of
    indices, a custom ``Sampler`` or ``batch_sampler``, ``SubsetRandomSampler``: the probe is
    drawn from their indices only, so a dataset shared with training never lends the probe a
    training image. Other datasets contribute their first ``num_images`` samples in loader
    order.

    Choosing changes no random stream: Python's, NumPy's, torch's and CUDA's global generators
    and the ``generator`` of the loader and of each of its samplers are restored afterwards
    (iterating a sampler or a loader draws from them). A dataset's own random state (e.g. an
    ``IterableDataset`` holding a private ``numpy`` generator it advances while iterating) cannot
    be seen from outside and is not protected: give such datasets a map-style twin for
    validation, or make them reseed at ``__iter__``.

    Args:
        loader: The validation data loader.
        num_images: How many images to keep (fewer when the data has fewer).
        seed: Seed of the subset.
        batch_transform: Turns a collated batch into a supported layout (see :func:`parse_batch`).

    Returns:
        The probe set on the CPU.
    """
    transform = batch_transform or (lambda batch: batch)
    dataset = getattr(loader, "dataset", None)
    map_style = not isinstance(dataset, IterableDataset) and hasattr(dataset, "__getitem__")
    with preserved_rng(), preserved_generators(_rng_owners(loader)):
        if dataset is not None and map_style and hasattr(dataset, "__len__"):
            batch, indices = _by_index(loader, num_images, seed)
            images, labels, boxes, masks = parse_batch(transform(batch))
        else:
            images, labels, boxes, masks = _by_iteration(loader, num_images, transform)
            indices = torch.arange(images.shape[0])
    keep = slice(0, num_images)
    return Probe(
        images=images[keep],
        labels=labels[keep],
        indices=indices[keep].long(),
        boxes=None if boxes is None else boxes[keep],
        masks=None if masks is None else masks[keep],
    )


def probe_still_in(
    loader: DataLoader, probe: Probe, batch_transform: Callable[[Any], Any] | None = None
) -> bool:
    """Whether ``loader`` still yields the probe's images at the probe's indices.

    True for a resumed run on the same validation data (whatever the seed), false for other
    data. Reads only the probe's samples (the first ones of an iterable dataset), every random
    stream restored as in :func:`select_probe`.
    """
    transform = batch_transform or (lambda batch: batch)
    dataset = getattr(loader, "dataset", None)
    map_style = not isinstance(dataset, IterableDataset) and hasattr(dataset, "__getitem__")
    with preserved_rng(), preserved_generators(_rng_owners(loader)):
        if dataset is not None and map_style and hasattr(dataset, "__len__"):
            wanted = probe.indices.tolist()
            if not set(wanted) <= set(loader_indices(loader).tolist()):
                return False
            batch = _collate(loader, [dataset[int(i)] for i in wanted])
            images, labels, _, _ = parse_batch(transform(batch))
        else:
            images, labels, _, _ = _by_iteration(loader, len(probe), transform)
            images, labels = images[: len(probe)], labels[: len(probe)]
    return (
        images.shape == probe.images.shape
        and torch.equal(images.to(probe.images.dtype), probe.images)
        and torch.equal(labels, probe.labels)
    )
