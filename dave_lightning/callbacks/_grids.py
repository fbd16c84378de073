"""GridPG grids for the monitor, built from the probe set with the data layer's grid builder."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dave_lightning.callbacks._config import MonitorConfig
from dave_lightning.callbacks._probe import Probe, rank_positions
from dave_lightning.data import make_grids

__all__ = ["GridSet", "Grids", "build_grid_set"]


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


class Grids:
    """The monitor's GridPG grids: built once per probe, or at every evaluation with a filter.

    With ``grid_min_confidence`` set the grids depend on the network, so they are rebuilt at
    every evaluation; otherwise only for a new probe (after :meth:`forget`). When no grid can be
    formed, GridPG is skipped with one warning per monitor.

    Args:
        config: The monitor's options (``metrics``, the grid options, ``seed``).

    Attributes:
        grid_set: The grids of the last build (``None`` before it or when none could be formed).
    """

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.grid_set: GridSet | None = None
        self._built = False
        self._warned = False

    def forget(self) -> None:
        """Build again at the next :meth:`share` (a new probe or a restored state)."""
        self._built = False

    def share(
        self,
        trainer: Any,
        probe: Probe,
        network: nn.Module,
        device: torch.device,
        dtype: torch.dtype,
    ) -> GridSet | None:
        """This process's share of the grids, built first when due (``None``: no GridPG)."""
        if "grid_pg" not in self.config.metrics:
            return None
        if not self._built or self.config.grid_min_confidence is not None:
            self.grid_set, reason = build_grid_set(probe, network, self.config)
            self._built = True
            if self.grid_set is None and not self._warned:
                self._warned = True
                warnings.warn(
                    f"AttributionMonitor: GridPG is skipped: {reason}", UserWarning, stacklevel=2
                )
        if self.grid_set is None:
            return None
        return self.grid_set.share(trainer, device, dtype)
