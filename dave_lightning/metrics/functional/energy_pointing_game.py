"""Energy pointing game (EnergyPG): how much positive attribution falls on the object.

Protocol (as used by the DAVE paper, after Wang et al., Score-CAM): the score is the positive
attribution inside the union of the object's bounding boxes divided by the positive attribution
over the whole image, 0 when the map has no positive mass. Higher is better; a map spread
uniformly scores the boxes' area fraction.

Box conventions chosen here:

* Boxes are ``x1, y1, x2, y2`` in the attribution map's pixel coordinates, end-exclusive: with
  integer coordinates the box covers columns ``x1 .. x2 - 1`` and rows ``y1 .. y2 - 1``. In
  general a pixel ``(row, col)`` is inside when its centre ``(col + 0.5, row + 0.5)`` lies in
  ``[x1, x2) x [y1, y2)``, so fractional coordinates rasterise like a renderer would, and boxes
  are clamped to the image for free.
* ``boxes`` may be a list of ``(n_i, 4)`` tensors, a ``(B, n, 4)`` tensor (rows holding NaN are
  padding and ignored, so variable counts can be collated), or a ``(B, H, W)`` bool mask.
* A sample whose region covers no pixel (no boxes, only padding, degenerate boxes, boxes outside
  the image, or an all-False mask) gets NaN: the score would be 0 whatever the map. The class
  excludes such samples from the mean and counts them in ``num_empty``.
* A map containing NaN or ±inf gets a NaN score (the class counts it in ``num_nan``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dave_lightning.errors import BadInputError
from dave_lightning.metrics.functional._checks import (
    check_attribution_maps,
    describe,
    finite_maps,
    positive_mass_ratio,
)

__all__ = ["Boxes", "boxes_to_mask", "energy_pointing_game"]

Boxes = Tensor | Sequence[Tensor]
"""A list of ``(n_i, 4)`` tensors, a ``(B, n, 4)`` tensor, or a ``(B, H, W)`` bool mask."""

_EXPECTED_BOXES = "a list of B (n_i, 4) tensors, a (B, n, 4) tensor or a (B, H, W) bool mask"


def _pad_box_list(boxes: Sequence[Tensor], batch: int, device: torch.device) -> Tensor:
    if len(boxes) != batch:
        raise BadInputError.for_argument("boxes", f"{batch} box tensors", f"{len(boxes)}")
    for index, item in enumerate(boxes):
        valid = isinstance(item, Tensor) and item.dtype != torch.bool and not item.is_complex()
        if not valid or (item.numel() and (item.dim() != 2 or item.shape[1] != 4)):
            raise BadInputError.for_argument(
                f"boxes[{index}]", "a real (n, 4) tensor (or an empty tensor)", describe(item)
            )
    most = max([item.shape[0] if item.numel() else 0 for item in boxes], default=0)
    wide = any(item.dtype == torch.float64 for item in boxes)
    dtype = torch.float64 if wide else torch.float32
    padded = torch.full((batch, most, 4), float("nan"), device=device, dtype=dtype)
    for index, item in enumerate(boxes):
        if item.numel():
            padded[index, : item.shape[0]] = item.to(device=device, dtype=padded.dtype)
    return padded


def _rasterise(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(B, n, 4)`` boxes (NaN rows ignored) → ``(B, H, W)`` bool union mask."""
    coords = boxes.to(torch.promote_types(boxes.dtype, torch.float32))
    x1, y1, x2, y2 = coords.unbind(dim=-1)
    cols = torch.arange(width, device=coords.device, dtype=coords.dtype) + 0.5
    rows = torch.arange(height, device=coords.device, dtype=coords.dtype) + 0.5
    in_x = (cols >= x1[..., None]) & (cols < x2[..., None])  # (B, n, W); NaN compares False
    in_y = (rows >= y1[..., None]) & (rows < y2[..., None])  # (B, n, H)
    covering = torch.bmm(in_y.transpose(1, 2).to(coords.dtype), in_x.to(coords.dtype))
    return covering > 0


def boxes_to_mask(
    boxes: Boxes, batch: int, height: int, width: int, device: torch.device | None = None
) -> Tensor:
    """Rasterise boxes into the ``(B, H, W)`` bool mask of their union.

    Args:
        boxes: A list of ``batch`` ``(n_i, 4)`` tensors, a ``(B, n, 4)`` tensor (NaN rows are
            padding), or a ``(B, H, W)`` bool mask (returned as is).
        batch: Number of samples B.
        height: Map height H.
        width: Map width W.
        device: Where to build the mask from a list of boxes (default: the first box's device).

    Returns:
        ``(B, H, W)`` bool mask, True on pixels whose centre lies inside a box.

    Raises:
        BadInputError: For boxes of the wrong type, dtype or shape.

    Example:
        >>> boxes_to_mask([torch.tensor([[1, 0, 3, 2]])], 1, 3, 4).int()
        tensor([[[0, 1, 1, 0],
                 [0, 1, 1, 0],
                 [0, 0, 0, 0]]], dtype=torch.int32)
    """
    if isinstance(boxes, Tensor) and boxes.dtype == torch.bool:
        if boxes.shape != (batch, height, width):
            raise BadInputError.for_argument(
                "boxes", f"a bool mask of shape {(batch, height, width)}", describe(boxes)
            )
        return boxes
    if isinstance(boxes, Tensor):
        if boxes.is_complex() or boxes.dim() != 3 or boxes.shape[::2] != (batch, 4):
            expected = f"{_EXPECTED_BOXES} with B={batch}"
            raise BadInputError.for_argument("boxes", expected, describe(boxes))
        return _rasterise(boxes, height, width)
    if isinstance(boxes, Sequence) and not isinstance(boxes, str):
        if device is None:
            device = boxes[0].device if len(boxes) and isinstance(boxes[0], Tensor) else None
        padded = _pad_box_list(boxes, batch, device or torch.device("cpu"))
        return _rasterise(padded, height, width)
    raise BadInputError.for_argument("boxes", _EXPECTED_BOXES, describe(boxes))


def _energy_pointing_game_update(
    attributions: Tensor, boxes: Boxes
) -> tuple[Tensor, Tensor, Tensor]:
    """Check the inputs and score each map.

    Returns:
        ``(scores, finite, empty)``: ``(B,)`` scores (NaN for non-finite maps and empty regions),
        the bool mask of finite maps, and the bool mask of empty regions.
    """
    maps = check_attribution_maps(attributions)
    batch, height, width = maps.shape
    region = boxes_to_mask(boxes, batch, height, width, device=maps.device).to(maps.device)
    finite = finite_maps(maps)
    empty = ~region.flatten(1).any(dim=1)
    positive = torch.where(finite[:, None, None], maps, torch.zeros_like(maps)).clamp(min=0)
    wide = torch.promote_types(maps.dtype, torch.float32)  # half-precision sums overflow
    inside = torch.where(region, positive, torch.zeros_like(positive)).sum(dim=(1, 2), dtype=wide)
    scores = positive_mass_ratio(inside, positive.sum(dim=(1, 2), dtype=wide)).to(maps.dtype)
    invalid = empty | ~finite
    return torch.where(invalid, torch.full_like(scores, float("nan")), scores), finite, empty


def energy_pointing_game(attributions: Tensor, boxes: Boxes) -> Tensor:
    """Score each map by its share of positive attribution inside the union of its boxes.

    Args:
        attributions: Floating ``(B, H, W)`` signed attribution maps.
        boxes: Per sample, the object's boxes ``x1, y1, x2, y2`` (pixels, end-exclusive): a list
            of B ``(n_i, 4)`` tensors, a ``(B, n, 4)`` tensor (NaN rows are padding), or a
            ``(B, H, W)`` bool mask of the object region.

    Returns:
        ``(B,)`` scores in [0, 1] in the maps' dtype: 0 where a map has no positive mass, NaN
        where the region is empty or the map contains NaN or ±inf.

    Raises:
        BadInputError: For maps or boxes of the wrong type, dtype or shape.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 4, 4)
        >>> maps[:, 0, 0] = 3.0   # inside the box
        >>> maps[:, 3, 3] = 1.0   # outside
        >>> boxes = [torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.zeros(0, 4)]
        >>> energy_pointing_game(maps, boxes)
        tensor([0.7500,    nan])
    """
    scores, _, _ = _energy_pointing_game_update(attributions, boxes)
    return scores
