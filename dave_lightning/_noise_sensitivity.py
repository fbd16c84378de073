"""Measuring how a model's target score degrades along DAVE's noise schedule (private).

The measurement behind :func:`dave_lightning.calibrate_noise_alpha`: every image is scored clean
and under ``num_draws`` noise draws at every level ``t`` of the variance-preserving mix
``x̃ = (1 - t) x + sqrt(1 - (1 - t)²) ε``, with each draw keyed by ``(seed, image_id, draw)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dave_lightning._common import check_class_indices, check_logits
from dave_lightning.transforms import add_noise, slot_noise, slot_seed

__all__ = ["measure_retained"]

_DRAW_STREAM = 1 << 40  # draw d is keyed as sample _DRAW_STREAM + d: apart from DAVE's samples


def _noisy_inputs(
    images: Tensor, slots: Tensor, noisy_levels: Tensor, draws: int, ids: list[int], seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The model inputs of one chunk of slots, with each slot's image, level and clean flag.

    Slot ``s`` of image ``i = s // S`` (``S = 1 + L' · draws``) is the clean image when
    ``s % S == 0``, else draw ``d`` at noisy level ``j`` with ``s % S - 1 = j · draws + d``.
    """
    per_image = 1 + len(noisy_levels) * draws
    image_index, rest = slots // per_image, slots % per_image
    clean = rest == 0
    level_index, draw = (rest - 1).clamp(min=0) // draws, (rest - 1).clamp(min=0) % draws
    originals = images[image_index.to(images.device)]
    noise = torch.zeros_like(originals)
    level = torch.zeros(len(slots), dtype=torch.float64)
    rows = (~clean).nonzero().flatten()
    if len(rows):
        level[rows] = noisy_levels[level_index[rows]]
        seeds = [
            slot_seed(seed, ids[i], _DRAW_STREAM + d)
            for i, d in zip(image_index[rows].tolist(), draw[rows].tolist(), strict=True)
        ]
        noise[rows.to(images.device)] = slot_noise(
            seeds, images.shape[1:], images.device, images.dtype
        )
    return add_noise(originals, level, noise), image_index, level_index, clean


def _statistics(logits: Tensor, targets: Tensor, statistic: str) -> tuple[Tensor, Tensor]:
    """``(score, margin)`` of each row's targets, ``(n, K)`` float64 on the CPU."""
    check_logits(logits, targets.shape[0], min_classes=2)
    check_class_indices(targets, logits.shape[1])
    values = logits.detach().double()
    target_logit = values.gather(1, targets)
    others = values[:, None, :].expand(-1, targets.shape[1], -1).clone()
    others.scatter_(2, targets[..., None], -torch.inf)
    margin = target_logit - others.amax(dim=2)
    if statistic == "margin":
        return margin.cpu(), margin.cpu()
    excess = values.softmax(dim=1).gather(1, targets) - 1.0 / values.shape[1]  # above chance
    return excess.cpu(), margin.cpu()


def measure_retained(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    ids: list[int],
    levels: Sequence[float] | Tensor,
    num_draws: int,
    statistic: str,
    *,
    seed: int,
    max_batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Each image's retained score along the noise schedule (forward passes only, batched).

    Call inside :func:`~dave_lightning.attributor.attribution_session` under ``no_grad``.

    Args:
        model: The classifier.
        images: ``(B, C, H, W)`` clean images.
        targets: ``(B, K)`` classes.
        ids: Keys of each image's noise stream.
        levels: The levels ``t`` (0 is the clean image).
        num_draws: Noise draws per level and image.
        statistic: ``"probability"`` (softmax above chance) or ``"margin"``.
        seed: Seed of the noise.
        max_batch_size: Most model inputs per pass.

    Returns:
        ``(per_pair, used)``: ``(B, K, L)`` retained fractions (NaN where unused) and the
        ``(B, K)`` pairs whose target is the clean top class.
    """
    grid = torch.as_tensor(levels, dtype=torch.float64).cpu()
    noisy_levels, draws = grid[grid > 0], num_draws
    batch, pairs = targets.shape
    clean_score = torch.zeros(batch, pairs, dtype=torch.float64)
    clean_margin = torch.zeros(batch, pairs, dtype=torch.float64)
    sums = torch.zeros(batch, len(noisy_levels), pairs, dtype=torch.float64)
    slots = torch.arange(batch * (1 + len(noisy_levels) * draws))
    for chunk in slots.split(max_batch_size):
        inputs, image_index, level_index, clean = _noisy_inputs(
            images, chunk, noisy_levels, draws, ids, seed
        )
        score, margin = _statistics(
            model(inputs), targets[image_index.to(targets.device)], statistic
        )
        clean_score[image_index[clean]] = score[clean]
        clean_margin[image_index[clean]] = margin[clean]
        noisy = ~clean
        sums.index_put_((image_index[noisy], level_index[noisy]), score[noisy], accumulate=True)
    used = (clean_margin > 0) & (clean_score > 0)  # the clean top class (above chance)
    per_pair = torch.ones(batch, pairs, len(grid), dtype=torch.float64)
    kept = (sums / draws / clean_score[:, None, :]).clamp(0.0, 1.0)
    per_pair[..., grid > 0] = kept.permute(0, 2, 1)
    per_pair[~used] = torch.nan
    return per_pair, used
