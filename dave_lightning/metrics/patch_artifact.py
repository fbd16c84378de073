"""PatchArtifactScore: the patch-grid artifact score as a torchmetrics metric."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dave_lightning.metrics._per_sample_scores import PerSampleScoreMetric
from dave_lightning.metrics.functional.patch_artifact import (
    PatchSize,
    _check_patch_size,
    _patch_artifact_update,
    patch_artifact_chance_level,
)

__all__ = ["PatchArtifactScore"]


class PatchArtifactScore(PerSampleScoreMetric):
    """Mean share of the maps' non-DC spectral energy on the patch-grid frequency lattice.

    Delegates to :func:`~dave_lightning.metrics.functional.patch_artifact_score`, whose module
    documentation gives the definition (the share of a map's variance carried by its mean patch
    tile), how to read it (1 for a pure patch-periodic pattern, ``(ph·pw - 1) / (H·W - 1)`` on
    average for white noise, near 0 for smooth maps) and the choices made. It quantifies the
    patch-grid artifacts that the DAVE paper shows in pictures for plain ViT gradients. Lower is
    better; ``compute()`` returns the mean over included samples. Constant maps (no energy off the
    zero frequency, score undefined) are excluded and counted in ``num_constant``; maps containing
    NaN or ±inf are excluded with a warning and counted in ``num_nan``. ``per_sample_scores()``
    and ``plot()`` give the distribution, with the white-noise level of the included maps marked.

    Args:
        patch_size: The ViT's patch size, ``ph = pw`` as an int or ``(ph, pw)``; stored as
            ``(ph, pw)``. Map heights and widths must be positive multiples of it.
        kwargs: Forwarded to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Raises:
        BadInputError: For an invalid ``patch_size``.

    Example:
        >>> import torch
        >>> grid = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).repeat(2, 2)  # repeats every 2 pixels
        >>> wave = torch.tensor([1.0, 0.0, -1.0, 0.0])[:, None].expand(4, 4)  # period 4: off-grid
        >>> metric = PatchArtifactScore(patch_size=2)
        >>> metric.update(torch.stack([grid, wave, grid + wave, torch.ones(4, 4)]))
        >>> metric.compute(), metric.num_constant
        (tensor(0.5263), tensor(1))
        >>> metric.per_sample_scores()  # the mix: 11 / (11 + 8), squared deviations
        tensor([1.0000, 0.0000, 0.5789])
        >>> fig, ax = metric.plot()  # histogram with the mean and the white-noise level marked
        >>> ax.get_xlabel()
        'score (lower is better)'
    """

    higher_is_better = False

    num_constant: Tensor
    chance_sum: Tensor

    def __init__(self, patch_size: PatchSize = 16, **kwargs: Any) -> None:
        patch = _check_patch_size(patch_size)
        super().__init__(**kwargs)
        self.patch_size = patch
        self.add_state("num_constant", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("chance_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, maps: Tensor) -> None:
        """Score a batch of ``(B, H, W)`` maps."""
        scores, finite, constant = _patch_artifact_update(maps, self.patch_size)
        include = finite & ~constant
        self.num_constant += constant.sum()
        height, width = maps.shape[1:]
        if height * width > 1:  # 1x1 maps are constant: nothing included, no chance level
            chance = patch_artifact_chance_level(height, width, self.patch_size)
            self.chance_sum += chance * include.sum().to(self.chance_sum.dtype)
        self._accumulate(scores, include, finite)

    def _reference_line(self) -> tuple[float | None, str]:
        """The mean white-noise level of the maps this process included (none before any)."""
        if int(self.count) == 0:
            return None, ""
        chance = float(self.chance_sum / self.count)
        return chance, f"white noise {chance:.3f}"
