"""The cost of each DAVE stage, and of the loops DAVE replaces (issue 16's table).

Each row is a callable over the same images and targets; :func:`stage_table` times them in
interleaved rounds (so machine noise hits all rows alike), takes each row's best round, and
records the peak memory of each configuration (CUDA: ``torch.cuda.max_memory_allocated`` above
what was allocated before; CPU: the process's resident-memory high-water mark above its resident
memory before, reset through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from _naive_effective import NaiveEffective
from torch import Tensor, nn

from dave_lightning import DAVE, effective_mode, robust_mean
from dave_lightning.transforms import (
    LocalTransformDistribution,
    add_noise,
    noise_levels,
    slot_noise,
    slot_seed,
    warp,
)

NO_WARP = {"flip_prob": 0.0, "rotation": 0.0, "translation": 0.0, "scale": (1.0, 1.0)}


@dataclass
class Setting:
    """One table: a model, its images and targets, N, the pass size and the autocast dtype."""

    model: nn.Module
    images: Tensor
    target: Tensor
    num_samples: int
    batch: int | str
    autocast: torch.dtype | None

    def passes(self) -> int:
        """Inputs per pass of the hand-written rows: DAVE's choice for this setting."""
        return DAVE(self.model, max_batch_size=self.batch).batch_size_for(self.images)  # type: ignore[arg-type]

    def autocast_context(self) -> contextlib.AbstractContextManager[object]:
        device = self.images.device.type
        enabled = self.autocast is not None
        return torch.autocast(device, dtype=self.autocast, enabled=enabled)


def _gradient_passes(setting: Setting, effective: bool) -> None:
    """N input-gradient passes per image of noisy copies, stacked like DAVE stacks samples."""
    images, n = setting.images, setting.num_samples
    slots = torch.arange(images.shape[0] * n, device=images.device)
    generator = torch.Generator(device=images.device).manual_seed(0)
    mode = effective_mode(setting.model) if effective else contextlib.nullcontext()
    with mode, setting.autocast_context():
        for chunk in slots.split(setting.passes()):
            index = chunk // n
            x = images[index].clone().requires_grad_(True)
            inputs = x
            if not effective:  # SmoothGrad's noise; the Step-I row has none
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                inputs = x + 0.1 * noise
            logits = setting.model(inputs)
            torch.autograd.grad(logits.gather(1, setting.target[index, None]).sum(), x)


def _dave(setting: Setting, **options: object) -> Callable[[], object]:
    dave = DAVE(
        setting.model,
        num_samples=setting.num_samples,
        max_batch_size=setting.batch,  # type: ignore[arg-type]
        autocast_dtype=setting.autocast,
        **options,  # type: ignore[arg-type]
    )
    return functools.partial(dave.attribute, setting.images, setting.target)


def _noise_step_loop(setting: Setting, alpha: float, detaching: bool = False) -> Tensor:
    """The reference code's structure: per noise step one pass over the whole batch.

    With DAVE's Step I (effective mode), or with ``detaching=True`` the reference code's way of
    making the effective gradient (detached softmax, LayerNorm scale and GELU gate; dense
    backward, see ``_naive_effective.py``).
    """
    images, n = setting.images, setting.num_samples
    distribution = LocalTransformDistribution()
    levels = noise_levels(n, alpha)
    maps = []
    mode = NaiveEffective(setting.model) if detaching else effective_mode(setting.model)
    with mode, setting.autocast_context():
        for k in range(n):
            seeds = [slot_seed(0, b, k) for b in range(images.shape[0])]
            x = images.clone().requires_grad_(True)
            noise = slot_noise(seeds, images.shape[1:], images.device, images.dtype)
            level = levels[k].expand(images.shape[0])
            z = add_noise(warp(x, distribution.sample(seeds)), level, noise)
            score = setting.model(z).gather(1, setting.target[:, None]).sum()
            (grad,) = torch.autograd.grad(score, x)
            maps.append(grad * images)
    return robust_mean(torch.stack(maps, dim=-1), dim=-1).sum(1)


def _one_sample_loop(setting: Setting, alpha: float) -> Tensor:
    """DAVE one sample of one image per pass."""
    images, n = setting.images, setting.num_samples
    distribution = LocalTransformDistribution()
    levels = noise_levels(n, alpha)
    out = []
    with effective_mode(setting.model), setting.autocast_context():
        for b in range(images.shape[0]):
            maps = []
            for k in range(n):
                seeds = [slot_seed(0, b, k)]
                x = images[b : b + 1].clone().requires_grad_(True)
                noise = slot_noise(seeds, images.shape[1:], images.device, images.dtype)
                z = add_noise(warp(x, distribution.sample(seeds)), levels[k : k + 1], noise)
                (grad,) = torch.autograd.grad(setting.model(z)[0, setting.target[b]], x)
                maps.append(grad * images[b : b + 1])
            out.append(robust_mean(torch.cat(maps), dim=0).sum(0))
    return torch.stack(out)


def stage_rows(setting: Setting, with_loops: bool) -> dict[str, Callable[[], object]]:
    """The rows of the table, in order."""
    alpha = 0.3
    rows: dict[str, Callable[[], object]] = {
        "N plain input-gradient passes (SmoothGrad-N's cost)": functools.partial(
            _gradient_passes, setting, False
        ),
        "the same passes in effective mode (Step I only)": functools.partial(
            _gradient_passes, setting, True
        ),
        "DAVE, no warp, no noise, mean": _dave(
            setting, noise_alpha=0.0, aggregation="mean", **NO_WARP
        ),
        "DAVE, no warp, noise, mean": _dave(
            setting, noise_alpha=alpha, aggregation="mean", **NO_WARP
        ),
        "DAVE, warp, noise, mean": _dave(setting, noise_alpha=alpha, aggregation="mean"),
        "DAVE default (robust)": _dave(setting, noise_alpha=alpha),
    }
    if with_loops:
        rows["one noise step over the batch per pass (reference structure)"] = functools.partial(
            _noise_step_loop, setting, alpha
        )
        rows["the same loop, Step I by detaching (reference structure and operators)"] = (
            functools.partial(_noise_step_loop, setting, alpha, detaching=True)
        )
        rows["one sample at a time"] = functools.partial(_one_sample_loop, setting, alpha)
    return rows


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """``(seconds, peak MB above the memory in use before)`` of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base: float = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (Linux)
        base = _status_mb("VmRSS")
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _status_mb("VmHWM") - base
    return time.perf_counter() - start, peak


def stage_table(setting: Setting, repeats: int, with_loops: bool) -> list[tuple[str, float, float]]:
    """``(row, best seconds, peak MB)`` per row; rows interleaved ``repeats`` times after a warm-up.

    The loops (slow) run once, after the warm-up of the other rows.
    """
    rows = stage_rows(setting, with_loops)
    device = setting.images.device
    best = dict.fromkeys(rows, math.inf)
    peak = dict.fromkeys(rows, 0.0)
    fast = [name for name in rows if "loop" not in name and "at a time" not in name]
    for name in fast:
        rows[name]()  # warm-up
    for round_index in range(repeats):
        for name in rows:
            if name not in fast and round_index > 0:
                continue
            seconds, megabytes = _timed(rows[name], device)
            best[name] = min(best[name], seconds)
            peak[name] = max(peak[name], megabytes)
    return [(name, best[name], peak[name]) for name in rows]
