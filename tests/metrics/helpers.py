"""Slow, explicit float64 references for the metrics tests.

Written from the specification with Python loops over pixels, boxes and steps; nothing here is
shared with (or imported from) the implementation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

Grid = list[list[float]]


def as_grid(map_2d: Tensor) -> Grid:
    return [[float(v) for v in row] for row in map_2d.double().tolist()]


def ref_grid_pointing_game(map_2d: Tensor, cell: int, grid_size: int, smoothing: int) -> float:
    values = as_grid(map_2d)
    height, width = len(values), len(values[0])
    half = smoothing // 2
    smoothed = [[0.0] * width for _ in range(height)]
    for y in range(height):
        for x in range(width):
            total = 0.0
            for dy in range(-half, half + 1):
                for dx in range(-half, half + 1):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        total += values[y + dy][x + dx]
            smoothed[y][x] = total / (smoothing * smoothing)  # zero padding counted
    cell_h, cell_w = height // grid_size, width // grid_size
    row, col = divmod(cell, grid_size)
    inside = everywhere = 0.0
    for y in range(height):
        for x in range(width):
            positive = max(smoothed[y][x], 0.0)
            everywhere += positive
            if row * cell_h <= y < (row + 1) * cell_h and col * cell_w <= x < (col + 1) * cell_w:
                inside += positive
    return inside / everywhere if everywhere > 0 else 0.0


Box = tuple[float, float, float, float]


def ref_energy_pointing_game(map_2d: Tensor, boxes: list[Box]) -> float:
    """Pixel (y, x) is inside a box when its centre (x + .5, y + .5) is in [x1, x2) x [y1, y2)."""
    values = as_grid(map_2d)
    height, width = len(values), len(values[0])
    inside = everywhere = 0.0
    covered = 0
    for y in range(height):
        for x in range(width):
            hit = any(x1 <= x + 0.5 < x2 and y1 <= y + 0.5 < y2 for (x1, y1, x2, y2) in boxes)
            covered += hit
            positive = max(values[y][x], 0.0)
            everywhere += positive
            inside += positive if hit else 0.0
    if covered == 0:
        return math.nan
    return inside / everywhere if everywhere > 0 else 0.0


def ref_int_box_mask(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> Tensor:
    """Integer boxes, end-exclusive, clamped: filled slice by slice."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes:
        mask[max(y1, 0) : max(min(y2, height), 0), max(x1, 0) : max(min(x2, width), 0)] = True
    return mask


def reflect(index: int, size: int) -> int:
    if size == 1:
        return 0
    while index < 0 or index >= size:
        index = -index if index < 0 else 2 * (size - 1) - index
    return index


def ref_blur(image: Tensor, kernel_size: int, sigma: float) -> list[Grid]:
    """2-D Gaussian window (normalised over the window), mirrored borders, per channel."""
    half = kernel_size // 2
    weights = [
        [math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma)) for dx in range(-half, half + 1)]
        for dy in range(-half, half + 1)
    ]
    norm = sum(sum(row) for row in weights)
    channels = [as_grid(channel) for channel in image]
    height, width = len(channels[0]), len(channels[0][0])
    out = []
    for plane in channels:
        blurred = [[0.0] * width for _ in range(height)]
        for y in range(height):
            for x in range(width):
                acc = 0.0
                for i, dy in enumerate(range(-half, half + 1)):
                    for j, dx in enumerate(range(-half, half + 1)):
                        source = plane[reflect(y + dy, height)][reflect(x + dx, width)]
                        acc += weights[i][j] * source
                blurred[y][x] = acc / norm
        out.append(blurred)
    return out


class PixelLinear(nn.Module):
    """A linear classifier over all pixels: logits = W · flatten(x) + b."""

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())  # (K, C, H, W)
        self.bias = nn.Parameter(bias.clone())  # (K,)

    def forward(self, images: Tensor) -> Tensor:
        return images.flatten(1) @ self.weight.flatten(1).T + self.bias


def ref_linear_logits(model: PixelLinear, image: list[Grid]) -> list[float]:
    weight = model.weight.detach().double().tolist()
    bias = model.bias.detach().double().tolist()
    logits = []
    for k in range(len(bias)):
        total = bias[k]
        for c, plane in enumerate(image):
            for y, row in enumerate(plane):
                for x, value in enumerate(row):
                    total += weight[k][c][y][x] * value
        logits.append(total)
    return logits


def ref_softmax(logits: list[float], index: int) -> float:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return exps[index] / sum(exps)


def ref_deletion_curve(
    model: PixelLinear,
    image: Tensor,
    map_2d: Tensor,
    target: int,
    *,
    steps: int,
    max_fraction: float,
    most_first: bool,
    fill: list[Grid],
    score: str,
) -> list[float]:
    """Distinct attribution values are required: the order is then unique."""
    values = as_grid(map_2d)
    height, width = len(values), len(values[0])
    pixels = [(y, x) for y in range(height) for x in range(width)]
    ranked = sorted(pixels, key=lambda p: values[p[0]][p[1]], reverse=most_first)
    original = [as_grid(channel) for channel in image]
    curve = []
    for k in range(steps + 1):
        count = round(k / steps * max_fraction * (height * width))
        perturbed = [[row[:] for row in plane] for plane in original]
        for y, x in ranked[:count]:
            for c in range(len(perturbed)):
                perturbed[c][y][x] = fill[c][y][x]
        logits = ref_linear_logits(model, perturbed)
        curve.append(ref_softmax(logits, target) if score == "softmax" else logits[target])
    return curve


def ref_trapezoid_auc(curve: list[float], fractions: list[float]) -> float:
    area = 0.0
    for i in range(1, len(curve)):
        area += (fractions[i] - fractions[i - 1]) * (curve[i] + curve[i - 1]) / 2
    return area / (fractions[-1] - fractions[0])


def constant_fill(value: float, channels: int, height: int, width: int) -> list[Grid]:
    return [[[value] * width for _ in range(height)] for _ in range(channels)]


def mean_fill(image: Tensor) -> list[Grid]:
    out = []
    for channel in image:
        plane = as_grid(channel)
        mean = sum(sum(row) for row in plane) / (len(plane) * len(plane[0]))
        out.append([[mean] * len(plane[0]) for _ in plane])
    return out
