"""The embedded synthetic dataset and the GridPG grid builder.

Imports only torch and :mod:`dave_lightning.errors` (no Lightning, no timm).
"""

from dave_lightning.data.grids import GridBatch, make_grids, max_grids
from dave_lightning.data.selection import confidently_correct
from dave_lightning.data.synthetic import (
    DEFAULT_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SHAPE_NAMES,
    ShapeSample,
    ShapesWithMasks,
    SyntheticShapes,
    denormalize,
)

__all__ = [
    "DEFAULT_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "GridBatch",
    "ShapeSample",
    "ShapesWithMasks",
    "SyntheticShapes",
    "confidently_correct",
    "denormalize",
    "make_grids",
    "max_grids",
]
