"""Explanation-quality metrics as torchmetrics: pixel deletion, two pointing games, artifacts.

Each class accumulates over batches and synchronises across processes; the pure per-sample
functions live in :mod:`dave_lightning.metrics.functional`. This package imports only torch,
torchmetrics and :mod:`dave_lightning.errors` (matplotlib lazily, inside ``plot``).

Example:
    >>> import torch
    >>> from dave_lightning.metrics import EnergyPointingGame, GridPointingGame, PixelDeletion
    >>> grid = GridPointingGame(grid_size=2)
    >>> grid.update(torch.rand(4, 8, 8), torch.tensor([0, 1, 2, 3]))
    >>> bool(0 <= grid.compute() <= 1)
    True
"""

from dave_lightning.metrics.energy_pointing_game import EnergyPointingGame
from dave_lightning.metrics.functional.pixel_deletion import DeletionOptions
from dave_lightning.metrics.grid_pointing_game import GridPointingGame
from dave_lightning.metrics.patch_artifact import PatchArtifactScore
from dave_lightning.metrics.pixel_deletion import PixelDeletion

__all__ = [
    "DeletionOptions",
    "EnergyPointingGame",
    "GridPointingGame",
    "PatchArtifactScore",
    "PixelDeletion",
]
