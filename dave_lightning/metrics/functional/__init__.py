"""Pure functions behind the explanation-quality metrics (torchmetrics' functional side).

Each function checks its inputs and returns per-sample results; the classes in
:mod:`dave_lightning.metrics` accumulate them across batches and processes.
"""

from dave_lightning.metrics.functional.deletion_auc import (
    deletion_auc,
    deletion_fractions,
    normalize_curves,
)
from dave_lightning.metrics.functional.energy_pointing_game import (
    Boxes,
    boxes_to_mask,
    energy_pointing_game,
)
from dave_lightning.metrics.functional.grid_pointing_game import grid_pointing_game
from dave_lightning.metrics.functional.patch_artifact import (
    patch_artifact_chance_level,
    patch_artifact_score,
)
from dave_lightning.metrics.functional.pixel_deletion import (
    DeletionOptions,
    DeletionOrder,
    DeletionScore,
    Replacement,
    pixel_deletion,
)

__all__ = [
    "Boxes",
    "DeletionOptions",
    "DeletionOrder",
    "DeletionScore",
    "Replacement",
    "boxes_to_mask",
    "deletion_auc",
    "deletion_fractions",
    "energy_pointing_game",
    "grid_pointing_game",
    "normalize_curves",
    "patch_artifact_chance_level",
    "patch_artifact_score",
    "pixel_deletion",
]
