"""GridPG grids: ``grid_size x grid_size`` images of distinct classes composed into one image.

The grid pointing game asks a method to explain one cell's class in a grid of images of distinct
classes; a good map puts its positive mass in that cell. :func:`make_grids` builds the grids and
says, for each, which cells to explain and with which classes, so a caller writes::

    grids = make_grids(images, labels, grid_size=2, model=model, min_confidence=0.9)
    maps = attributor.attribute(grids.images, grids.targets)          # (G, K, H, W)
    scores = grid_pointing_game(maps.flatten(0, 1), grids.explain_cells.flatten(), 2)

The paper's setting is ``grid_size=2`` with images the model classifies correctly at softmax
confidence >= 0.9 (``model=model, min_confidence=0.9``); chance level is ``1 / grid_size**2``.
Each source image is used at most once, so grids never share an image. When the (filtered)
images span fewer than ``grid_size**2`` classes no grid can be formed: the result is then an
empty :class:`GridBatch` whose ``reason`` says why, and ``on_empty`` decides whether that reason
is also a warning (the default), an error, or left to the caller (a monitor that warns itself).

Example:
    >>> import torch
    >>> images = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 4, 4)
    >>> grids = make_grids(images, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), grid_size=2, seed=0)
    >>> grids.images.shape, grids.cell_labels.shape, grids.targets.shape
    (torch.Size([2, 3, 4, 4]), torch.Size([2, 4]), torch.Size([2, 4]))
    >>> sorted(grids.cell_labels[0].tolist())  # four distinct classes per grid
    [0, 1, 2, 3]
    >>> make_grids(images[:3], torch.tensor([0, 1, 2]), on_empty="ignore").reason
    'no 2x2 grid can be formed: it needs 4 distinct classes, and the 3 images span 3'
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dave_lightning._common import check_choice, is_integer
from dave_lightning.data._checks import (
    check_fraction,
    check_image_batch,
    check_int,
    check_labels,
    describe,
)
from dave_lightning.data.selection import confidently_correct
from dave_lightning.errors import BadInputError, ConfigurationError

__all__ = ["GridBatch", "make_grids", "max_grids"]

_SEED_MASK = (1 << 64) - 1
_ON_EMPTY = ("warn", "raise", "ignore")


@dataclass(frozen=True)
class GridBatch:
    """Composed grids, their cells' classes and sources, and the cells to explain.

    Cells are numbered row-major: cell ``r * grid_size + c`` is in row ``r``, column ``c``.

    Attributes:
        images: ``(G, C, H', W')`` composed grids, in the input images' space and device.
        cell_labels: ``(G, grid_size**2)`` int64, the class of each cell.
        source_indices: ``(G, grid_size**2)`` int64, the index into the input ``images`` of the
            image in each cell.
        explain_cells: ``(G, K)`` int64, the cells to explain in each grid (ascending).
        grid_size: Cells per side.
        num_eligible: How many input images passed the confidence filter (all, without one).
        reason: ``None``, or why no grid could be formed (then ``G == 0``).
    """

    images: Tensor
    cell_labels: Tensor
    source_indices: Tensor
    explain_cells: Tensor
    grid_size: int
    num_eligible: int
    reason: str | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def targets(self) -> Tensor:
        """``(G, K)`` int64: the class of each cell to explain, the ``target`` to attribute."""
        return self.cell_labels.gather(1, self.explain_cells)


def max_grids(labels: Tensor, grid_size: int = 2) -> int:
    """The most grids of ``grid_size**2`` distinct classes that ``labels`` can fill.

    No image is used twice. ``G`` grids are possible exactly when the classes can supply
    ``grid_size**2 * G`` images with at most ``G`` from each class, i.e. when
    ``sum_k min(count_k, G) >= grid_size**2 * G``; that set of ``G`` is an interval from 0.

    Example:
        >>> max_grids(torch.tensor([0, 0, 0, 0, 1, 2, 3, 3]), grid_size=2)
        1
        >>> max_grids(torch.tensor([0, 1, 2]), grid_size=2)
        0
    """
    grid_size = check_int("grid_size", grid_size, minimum=2)
    labels = check_labels(labels)
    counts = torch.unique(labels, return_counts=True)[1]
    low, high = 0, labels.numel() // grid_size**2
    while low < high:  # the largest feasible G: binary search over an interval
        middle = (low + high + 1) // 2
        if int(counts.clamp(max=middle).sum()) >= grid_size**2 * middle:
            low = middle
        else:
            high = middle - 1
    return low


def make_grids(
    images: Tensor,
    labels: Tensor,
    grid_size: int = 2,
    *,
    num_grids: int | None = None,
    cells_per_grid: int | None = None,
    full_resolution: bool = False,
    output_size: int | tuple[int, int] | None = None,
    model: nn.Module | None = None,
    min_confidence: float | None = None,
    batch_size: int = 64,
    seed: int = 0,
    on_empty: Literal["warn", "raise", "ignore"] = "warn",
) -> GridBatch:
    """Compose images of distinct classes into ``grid_size x grid_size`` grids.

    Cells are the source images resized to ``(H' / grid_size, W' / grid_size)`` with
    antialiased bilinear interpolation (skipped when the size already matches), placed
    edge to edge with no gap. Resizing is linear, so it commutes with a per-channel
    normalisation: pass images in the model's normalised input space.

    Args:
        images: ``(N, C, H, W)`` floating source images.
        labels: ``(N,)`` their classes.
        grid_size: Cells per side (at least 2).
        num_grids: The most grids to build (default: as many as the images allow).
        cells_per_grid: Explain this many random cells per grid (default: every cell).
        full_resolution: Output ``(grid_size * H, grid_size * W)`` so cells keep their
            resolution (for models built with ``dynamic_img_size``).
        output_size: The grid's ``(H', W')`` (or a side); default ``(H, W)``. Each side must
            divide by ``grid_size``. Not with ``full_resolution``.
        model: When given, keep only images it classifies correctly (see ``min_confidence``).
        min_confidence: With ``model``, the least softmax probability of the true class
            (default 0: correct is enough).
        batch_size: Images per forward pass of the filter.
        seed: Seeds the choice of images, their cells and the cells to explain (a local
            generator; the global RNG is untouched).
        on_empty: When no grid can be formed: ``"warn"`` (a ``UserWarning`` with the reason),
            ``"raise"`` (a :class:`~dave_lightning.errors.BadInputError` with the reason) or
            ``"ignore"`` (only the returned ``reason`` says why).

    Returns:
        A :class:`GridBatch`, empty with a ``reason`` when fewer than ``grid_size**2`` classes
        remain.

    Raises:
        BadInputError: For malformed arguments (shapes, dtypes, sizes that do not divide), or,
            with ``on_empty="raise"``, when no grid can be formed.
        ConfigurationError: For ``min_confidence`` without ``model``, or ``full_resolution``
            with ``output_size``.
    """
    check_choice("on_empty", on_empty, _ON_EMPTY, shown=repr)
    images = check_image_batch(images)
    labels = check_labels(labels, images.shape[0])
    grid_size = check_int("grid_size", grid_size, minimum=2)
    cells = grid_size**2
    limit = None if num_grids is None else check_int("num_grids", num_grids, minimum=1)
    per_grid = _check_cells_per_grid(cells_per_grid, cells)
    size = _grid_size_of(images, grid_size, output_size, full_resolution)
    generator = torch.Generator().manual_seed(check_int("seed", seed) & _SEED_MASK)
    check_int("batch_size", batch_size, minimum=1)
    eligible = _eligible(images, labels, model, min_confidence, batch_size)
    count = max_grids(labels[eligible], grid_size)
    count = count if limit is None else min(count, limit)
    reason = None if count else _reason(labels[eligible], images.shape[0], grid_size, model)
    if reason is not None and on_empty == "raise":
        raise BadInputError(reason)
    if reason is not None and on_empty == "warn":
        warnings.warn(reason, UserWarning, stacklevel=2)
    sources = _assign(eligible, labels, grid_size, count, generator)
    explain = _explain_cells(count, cells, per_grid, generator)
    device = images.device
    return GridBatch(
        images=_compose(images, sources, grid_size, size),
        cell_labels=labels[sources].to(device),
        source_indices=sources.to(device),
        explain_cells=explain.to(device),
        grid_size=grid_size,
        num_eligible=int(eligible.numel()),
        reason=reason,
    )


def _check_cells_per_grid(cells_per_grid: int | None, cells: int) -> int:
    if cells_per_grid is None:
        return cells
    check_int("cells_per_grid", cells_per_grid, minimum=1)
    if cells_per_grid > cells:
        raise BadInputError.for_argument(
            "cells_per_grid", f"at most {cells} (the cells of a grid)", str(cells_per_grid)
        )
    return cells_per_grid


def _grid_size_of(
    images: Tensor,
    grid_size: int,
    output_size: int | tuple[int, int] | None,
    full_resolution: bool,
) -> tuple[int, int]:
    height, width = images.shape[-2:]
    if full_resolution:
        if output_size is not None:
            raise ConfigurationError.for_argument(
                "output_size", "None with full_resolution=True", repr(output_size)
            )
        return grid_size * height, grid_size * width
    size = (height, width) if output_size is None else output_size
    sides = (size, size) if isinstance(size, int) else tuple(size)
    if len(sides) != 2 or any(not is_integer(s) or s < grid_size or s % grid_size for s in sides):
        name = "images" if output_size is None else "output_size"
        raise BadInputError.for_argument(
            name,
            f"a grid height and width that divide by grid_size={grid_size}",
            describe(images) if output_size is None else repr(output_size),
        )
    return int(sides[0]), int(sides[1])


def _eligible(
    images: Tensor,
    labels: Tensor,
    model: nn.Module | None,
    min_confidence: float | None,
    batch_size: int,
) -> Tensor:
    """The indices of the images a grid may use (all, or those the model gets right)."""
    if model is None:
        if min_confidence is not None:
            raise ConfigurationError.for_argument(
                "min_confidence", "None when no model is given", repr(min_confidence)
            )
        return torch.arange(images.shape[0])
    threshold = 0.0 if min_confidence is None else check_fraction("min_confidence", min_confidence)
    keep = confidently_correct(
        model, images, labels, min_confidence=threshold, batch_size=batch_size
    )
    return torch.nonzero(keep).flatten()


def _assign(
    eligible: Tensor, labels: Tensor, grid_size: int, count: int, generator: torch.Generator
) -> Tensor:
    """``(count, grid_size**2)`` source indices, distinct classes in each row, none reused.

    Take up to ``count`` random images from each class, lay them out class after class (in a
    random class order) and deal the sequence round-robin into ``count`` grids: a class fills
    at most ``count`` consecutive places, so it lands in distinct grids. Cells and grids are
    then shuffled.
    """
    cells = grid_size**2
    if count == 0:
        return torch.zeros(0, cells, dtype=torch.long)
    eligible = eligible[torch.randperm(eligible.numel(), generator=generator)]
    classes = torch.unique(labels[eligible])
    classes = classes[torch.randperm(classes.numel(), generator=generator)]
    sequence = torch.cat([eligible[labels[eligible] == k][:count] for k in classes.tolist()])
    grids = sequence[: cells * count].view(cells, count).T
    cell_order = torch.rand(count, cells, generator=generator).argsort(dim=1)
    grids = grids.gather(1, cell_order)
    return grids[torch.randperm(count, generator=generator)]


def _explain_cells(count: int, cells: int, per_grid: int, generator: torch.Generator) -> Tensor:
    if per_grid == cells:
        return torch.arange(cells).expand(count, cells).clone()
    chosen = torch.rand(count, cells, generator=generator).argsort(dim=1)[:, :per_grid]
    return chosen.sort(dim=1).values


def _compose(images: Tensor, sources: Tensor, grid_size: int, size: tuple[int, int]) -> Tensor:
    """Place ``images[sources[g, i]]`` at row-major cell ``i`` of grid ``g``."""
    count = sources.shape[0]
    channels = images.shape[1]
    cell_h, cell_w = size[0] // grid_size, size[1] // grid_size
    cells = images[sources.flatten().to(images.device)]
    if cells.shape[-2:] != (cell_h, cell_w) and cells.shape[0] > 0:
        cells = F.interpolate(
            cells, size=(cell_h, cell_w), mode="bilinear", antialias=True, align_corners=False
        )
    cells = cells.reshape(count, grid_size, grid_size, channels, cell_h, cell_w)
    return cells.permute(0, 3, 1, 4, 2, 5).reshape(count, channels, size[0], size[1])


def _reason(eligible_labels: Tensor, total: int, grid_size: int, model: nn.Module | None) -> str:
    classes = torch.unique(eligible_labels).numel()
    source = (
        f"the {eligible_labels.numel()} of {total} images that passed the model filter"
        if model is not None
        else f"the {total} images"
    )
    return (
        f"no {grid_size}x{grid_size} grid can be formed: it needs {grid_size**2} distinct "
        f"classes, and {source} span {classes}"
    )
