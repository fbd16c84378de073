"""Private drawing primitives of the synthetic dataset: seeding, background, shapes, cue mark.

Everything here is a pure function of its arguments and a local ``torch.Generator``; nothing
reads or advances the global RNG. Images are ``(3, H, W)`` float32 in ``[0, 1]``; coordinates are
pixel centres ``(x + 0.5, y + 0.5)``, so a pixel belongs to a shape when its centre does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SHAPES",
    "Canvas",
    "background",
    "class_colours",
    "contrasting_colour",
    "cue_box",
    "generator",
    "shape_mask",
    "tight_box",
]

_MASK64 = (1 << 64) - 1
_BACKGROUND_LOW = 0.15  # the background lies in [0.15, 0.85]
_MAX_TINT = 0.3  # shapes are dark ([0, 0.3]) or light ([0.7, 1]) per channel
_MAX_TILT_DEGREES = 15.0  # shapes are upright up to this rotation


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def generator(*keys: int) -> torch.Generator:
    """A CPU generator whose state is a well-mixed hash of ``keys`` (any Python ints)."""
    state = 0
    for key in keys:
        state = _splitmix64(state ^ (key & _MASK64))
    return torch.Generator().manual_seed(state)


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates of an ``(H, W)`` image, shared by every sample of a dataset."""

    height: int
    width: int
    xs: Tensor
    ys: Tensor
    basis: Tensor

    @classmethod
    def of_size(cls, height: int, width: int) -> Canvas:
        """Build ``xs`` ``(1, W)``, ``ys`` ``(H, 1)`` and ``basis`` ``(9, H, W)``.

        ``basis`` holds the bicubic upsamplings of the nine one-hot 3x3 grids, so a smooth
        colour field is a ``(3, 9)`` matrix product away.
        """
        xs = (torch.arange(width, dtype=torch.float32) + 0.5).unsqueeze(0)
        ys = (torch.arange(height, dtype=torch.float32) + 0.5).unsqueeze(1)
        one_hot = torch.eye(9).view(9, 1, 3, 3)
        basis = F.interpolate(one_hot, size=(height, width), mode="bicubic", align_corners=False)
        return cls(height, width, xs, ys, basis[:, 0])

    @property
    def side(self) -> int:
        """The shorter side, the unit every size is scaled by."""
        return min(self.height, self.width)


def background(canvas: Canvas, gen: torch.Generator, clutter: float = 1.0) -> Tensor:
    """Cluttered texture: a smooth colour field under soft blobs, stripes and thin strokes.

    ``clutter`` in ``[0, 1]`` scales the contrast of every element (0: flat grey plus nothing).
    The result lies in ``[0.15, 0.85]``.
    """
    coarse = 0.5 + clutter * (torch.rand(3, canvas.basis.shape[0], generator=gen) - 0.5)
    image = torch.einsum("cn,nhw->chw", coarse, canvas.basis)
    blob_count = int(torch.randint(2, 6, (), generator=gen))
    alphas = clutter * torch.cat(
        [_blobs(canvas, gen, blob_count), _stripes(canvas, gen), _strokes(canvas, gen)]
    )
    colours = torch.rand(alphas.shape[0], 3, generator=gen)
    image = _composite(image, alphas, colours)
    return _BACKGROUND_LOW + (1 - 2 * _BACKGROUND_LOW) * image.clamp(0.0, 1.0)


def _composite(image: Tensor, alphas: Tensor, colours: Tensor) -> Tensor:
    """Paint flat ``colours`` (L, 3) over ``image`` in order, layer ``l`` at opacity ``alphas[l]``.

    Layer ``l`` survives the layers above it by the product of their ``1 - alpha``, so the
    sequential "over" operations collapse into one weighted sum.
    """
    transmit = torch.cat([1.0 - alphas, torch.ones_like(alphas[:1])])
    above = transmit.flip(0).cumprod(0).flip(0)  # above[l] = prod over layers >= l
    weights = alphas * above[1:]
    return image * above[0] + torch.einsum("lc,lhw->chw", colours, weights)


def _blobs(canvas: Canvas, gen: torch.Generator, count: int) -> Tensor:
    """``count`` soft Gaussian blobs as ``(count, H, W)`` opacities up to 0.9."""
    x, y, spread, strength = torch.rand(4, count, 1, 1, generator=gen)
    distance2 = (canvas.xs - x * canvas.width) ** 2 + (canvas.ys - y * canvas.height) ** 2
    radius = (0.05 + 0.15 * spread) * canvas.side
    return (0.4 + 0.5 * strength) * torch.exp(-distance2 / radius**2)


def _stripes(canvas: Canvas, gen: torch.Generator) -> Tensor:
    """Hard-edged parallel stripes at a random angle and period, as a ``(1, H, W)`` opacity."""
    angle, period, phase, strength = torch.rand(4, generator=gen).tolist()
    along = canvas.xs * math.cos(math.pi * angle) + canvas.ys * math.sin(math.pi * angle)
    wave = torch.sin(2 * math.pi * (along / ((0.08 + 0.17 * period) * canvas.side) + phase))
    return (0.6 * strength * (wave > 0.3).float()).unsqueeze(0)


def _strokes(canvas: Canvas, gen: torch.Generator, count: int = 2) -> Tensor:
    """``count`` thin straight segments between random points, as ``(count, H, W)`` 0/1 maps."""
    ends = torch.rand(count, 4, 1, 1, generator=gen)
    ax, bx = ends[:, 0] * canvas.width, ends[:, 2] * canvas.width
    ay, by = ends[:, 1] * canvas.height, ends[:, 3] * canvas.height
    dx, dy = bx - ax, by - ay
    along = ((canvas.xs - ax) * dx + (canvas.ys - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-6)
    along = along.clamp(0.0, 1.0)
    distance2 = (canvas.xs - ax - along * dx) ** 2 + (canvas.ys - ay - along * dy) ** 2
    return (distance2 <= max(0.6, 0.012 * canvas.side) ** 2).float()


def _disc(u: Tensor, v: Tensor) -> Tensor:
    return u * u + v * v <= 1.0


def _ring(u: Tensor, v: Tensor) -> Tensor:
    radius2 = u * u + v * v
    return (radius2 <= 1.0) & (radius2 >= 0.55**2)


def _square(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.72


def _frame(u: Tensor, v: Tensor) -> Tensor:
    extent = torch.maximum(u.abs(), v.abs())
    return (extent <= 0.72) & (extent >= 0.4)


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    # Equilateral, inscribed in the unit circle: three half-planes at distance 1/2.
    reach = torch.stack([-v, 0.866 * u + 0.5 * v, -0.866 * u + 0.5 * v]).amax(dim=0)
    return reach <= 0.5


def _cross(u: Tensor, v: Tensor) -> Tensor:
    a, b = u.abs(), v.abs()
    return ((a <= 0.3) & (b <= 0.95)) | ((b <= 0.3) & (a <= 0.95))


def _bar(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() <= 0.95) & (v.abs() <= 0.3)


SHAPES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "ring": _ring,
    "bar": _bar,
    "frame": _frame,
}
"""Every drawable shape, by name: a membership test in unit-circle coordinates."""


def shape_mask(canvas: Canvas, name: str, gen: torch.Generator) -> Tensor:
    """Draw ``name`` at a random centre, radius and rotation; return its ``(H, W)`` bool mask.

    The shape lies inside a circle of radius ``r`` in ``[0.12, 0.2] * side`` (at least 3 px)
    whose centre keeps it one pixel clear of every border.
    """
    size, rotation, x, y = torch.rand(4, generator=gen).tolist()
    radius = max(3.0, (0.12 + 0.08 * size) * canvas.side)
    cx = radius + 1 + x * (canvas.width - 2 * radius - 2)
    cy = radius + 1 + y * (canvas.height - 2 * radius - 2)
    angle = math.radians(_MAX_TILT_DEGREES) * (2 * rotation - 1)
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = (canvas.xs - cx) / radius, (canvas.ys - cy) / radius
    return SHAPES[name](dx * cos + dy * sin, dy * cos - dx * sin)


def contrasting_colour(image: Tensor, mask: Tensor, gen: torch.Generator) -> Tensor:
    """A dark or light colour with a random tint: the one that contrasts with the pixels beneath.

    Dark colours have every channel in ``[0, 0.3]``, light ones in ``[0.7, 1]``; the pick is by
    the mean of the pixels beneath, so the shape's luminance differs from that mean by at least
    0.2, while its hue is random and carries no class information.
    """
    tint = _MAX_TINT * torch.rand(3, generator=gen)
    return tint if float(image[:, mask].mean()) >= 0.5 else 1.0 - tint


def tight_box(mask: Tensor) -> Tensor:
    """The ``(1, 4)`` float32 box ``x1, y1, x2, y2`` (end-exclusive) of a non-empty mask."""
    columns = torch.nonzero(mask.any(dim=0)).flatten()
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    box = [columns[0], rows[0], columns[-1] + 1, rows[-1] + 1]
    return torch.stack(box).to(torch.float32).unsqueeze(0)


def _clear_of(box: Tensor, left: int, top: int, size: int) -> bool:
    x1, y1, x2, y2 = (int(v) for v in box[0].tolist())
    apart_x = left + size + 1 <= x1 or x2 + 1 <= left
    apart_y = top + size + 1 <= y1 or y2 + 1 <= top
    return apart_x or apart_y


def _corner_spots(canvas: Canvas, size: int) -> list[tuple[int, int]]:
    margin = max(1, round(canvas.side / 32))
    far_x, far_y = canvas.width - margin - size, canvas.height - margin - size
    return [(margin, margin), (far_x, margin), (margin, far_y), (far_x, far_y)]


def _inset_spots(canvas: Canvas, size: int) -> list[tuple[int, int]]:
    """Squares centred in the four quadrants (a quarter of the size in from the borders)."""
    xs = (round(canvas.width / 4 - size / 2), round(3 * canvas.width / 4 - size / 2))
    ys = (round(canvas.height / 4 - size / 2), round(3 * canvas.height / 4 - size / 2))
    return [(x, y) for y in ys for x in xs]


def cue_box(canvas: Canvas, box: Tensor, gen: torch.Generator, placement: str = "corner") -> Tensor:
    """A ``(1, 4)`` square at least one pixel clear of ``box``, at a random free spot.

    ``"corner"`` spots are the image's corners; ``"inset"`` spots are the quadrants' centres,
    where small rotations, shifts and scalings about the image centre keep the mark in the frame
    (corners rotate out of it). With no free inset spot the corners are used.

    Raises:
        RuntimeError: When no spot is free, which the size limits of the dataset rule out.
    """
    size = max(2, round(canvas.side / 10))
    free: list[tuple[int, int]] = []
    if placement == "inset":
        free = [spot for spot in _inset_spots(canvas, size) if _clear_of(box, *spot, size)]
    if not free:
        free = [spot for spot in _corner_spots(canvas, size) if _clear_of(box, *spot, size)]
    if not free:
        raise RuntimeError(f"no corner is clear of the box {box.tolist()} on {canvas}")
    left, top = free[int(torch.randint(len(free), (1,), generator=gen))]
    return torch.tensor([[left, top, left + size, top + size]], dtype=torch.float32)


def class_colours(count: int) -> Tensor:
    """``count`` saturated, well-separated ``(count, 3)`` colours: evenly spaced hues."""
    hues = torch.arange(count, dtype=torch.float32) / count
    channel_offsets = torch.tensor([0.0, 2.0 / 3.0, 1.0 / 3.0])
    distance = ((hues.unsqueeze(1) + channel_offsets) % 1.0 - 0.5).abs()  # 0.5 at the peak
    return (6.0 * distance - 1.0).clamp(0.0, 1.0)
