"""GridPG grids for the monitor, built from the probe set with the data layer's grid builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._probe import Probe, rank_positions
from dave_lightning.data import make_grids

__all__ = ["GridSet", "build_grid_set"]


@dataclass
class GridSet:
    """Grids for the pointing game, sharded like the probe.

    Attributes:
        images: ``(G, C, H, W)`` composed grids.
        classes: ``(G, K)`` the class to explain in each scored cell.
        cells: ``(G, K)`` the row-major index of each scored cell.
        ids: ``(G,)`` keys of each grid's random stream.
    """

    images: Tensor
    classes: Tensor
    cells: Tensor
    ids: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def share(self, trainer: Any, device: torch.device, dtype: torch.dtype) -> GridSet:
        """This process's share of the grids (see :func:`rank_positions`), on ``device``."""
        index = rank_positions(trainer, len(self))
        return GridSet(
            self.images[index].to(device=device, dtype=dtype),
            self.classes[index].to(device),
            self.cells[index].to(device),
            self.ids[index],
        )


def build_grid_set(
    probe: Probe, network: nn.Module, config: MonitorConfig
) -> tuple[GridSet | None, str | None]:
    """Compose up to ``max_grids`` grids of distinct classes from the probe images.

    Every process builds the same grids (deterministic for ``seed``) and attributes its share.
    Grids key their random streams with negative ids, apart from the probe's dataset indices.

    Returns:
        ``(grids, None)``, or ``(None, reason)`` when no grid can be formed.
    """
    parameter = next(network.parameters())
    filtering = config.grid_min_confidence is not None
    batch = make_grids(
        probe.images.to(parameter.device, parameter.dtype) if filtering else probe.images,
        probe.labels,
        config.grid_size,
        num_grids=config.max_grids,
        full_resolution=config.grid_full_resolution,
        model=network if filtering else None,
        min_confidence=config.grid_min_confidence,
        batch_size=config.forward_batch_size,
        seed=config.seed,
        on_empty="ignore",  # the monitor turns the reason into its own setup warning
    )
    if len(batch) == 0:
        return None, batch.reason
    ids = -(torch.arange(len(batch)) + 1)
    return GridSet(batch.images.cpu(), batch.targets.cpu(), batch.explain_cells.cpu(), ids), None
