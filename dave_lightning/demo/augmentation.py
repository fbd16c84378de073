"""Training augmentation as ViTs get it: random resized crop, flip, small rotation and shift.

ImageNet ViTs are trained on random resized crops and flips at least (timm's and DeiT's recipes
add more); a model trained without them is not robust to the small warps DAVE averages over.
:func:`train_augmentation` builds the demo's pipeline from torchvision's ``transforms.v2``, and
:class:`Augmented` applies it to a dataset's ``(image, label, box)`` items with the box as a
``tv_tensors.BoundingBoxes``, so the box follows every crop, flip and rotation of its image.

The draws come from torch's global generator, as torchvision's transforms always do: a
DataLoader in the main process (or its seeded workers) after ``pl.seed_everything(seed)``
repeats them exactly. Validation data is never augmented.

Example:
    >>> import torch
    >>> from dave_lightning.data import SyntheticShapes
    >>> train = Augmented(SyntheticShapes("train", length=4, image_size=32), train_augmentation(32))
    >>> image, label, box = train[0]
    >>> image.shape, type(image) is torch.Tensor, box.shape
    (torch.Size([3, 32, 32]), True, torch.Size([1, 4]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsIndex

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["CROP_SCALE", "ROTATION_DEGREES", "TRANSLATION", "Augmented", "train_augmentation"]

CROP_SCALE = (0.5, 1.0)
"""Area share of a random resized crop. ImageNet recipes use (0.08, 1); the embedded objects
cover about 9 % of a 64-pixel image, so crops below half the image would often cut the object
(and its label) away."""
ROTATION_DEGREES = 15.0
"""Largest rotation either way (DAVE's Step II draws up to 20 degrees)."""
TRANSLATION = 0.1
"""Largest shift as a share of width and height (DAVE's Step II: 10 %)."""


def train_augmentation(
    image_size: int | tuple[int, int],
    *,
    crop_scale: tuple[float, float] = CROP_SCALE,
    rotation: float = ROTATION_DEGREES,
    translation: float = TRANSLATION,
    flip_prob: float = 0.5,
) -> v2.Compose:
    """The demo's training augmentation: crop, flip, rotate and shift, in that order.

    Works on normalised float images; pixels that rotation or shift bring in from outside are 0,
    the dataset's mean colour (DAVE's warps pad with the same zeros).

    Args:
        image_size: The output size ``S`` or ``(H, W)`` (the crop is resized back to it).
        crop_scale: Range of the crop's area as a share of the image.
        rotation: Largest rotation in degrees, either way.
        translation: Largest shift as a share of the width and height.
        flip_prob: Probability of a horizontal flip.

    Returns:
        A ``transforms.v2`` pipeline; called as ``pipeline(image, boxes)`` with a
        ``tv_tensors.Image`` and ``tv_tensors.BoundingBoxes`` it moves both alike.
    """
    size = [image_size, image_size] if isinstance(image_size, int) else list(image_size)
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
            v2.RandomHorizontalFlip(flip_prob),
            v2.RandomAffine(
                degrees=rotation,
                translate=(translation, translation),
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0.0,
            ),
        ]
    )


class Augmented(Dataset[tuple[Tensor, int, Tensor]]):
    """A dataset of ``(image, label, box)`` items with ``transform`` applied to image and box.

    The box, ``(n, 4)`` end-exclusive ``x1, y1, x2, y2`` pixels, is handed to ``transform`` as
    ``tv_tensors.BoundingBoxes`` on the image's canvas, so it is cropped, flipped and rotated
    with the image (torchvision clamps it to the canvas; a rotated box becomes the box around
    the rotated corners). Items come back as plain tensors, ready for the default collate.

    Args:
        dataset: Any dataset whose items are ``(image, label, box)``.
        transform: A ``transforms.v2`` transform (e.g. :func:`train_augmentation`).
    """

    def __init__(
        self, dataset: Dataset[tuple[Tensor, int, Tensor]], transform: Callable[..., Any]
    ) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: SupportsIndex) -> tuple[Tensor, int, Tensor]:
        image, label, box = self.dataset[index]
        boxes = tv_tensors.BoundingBoxes(
            box, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(image.shape[-2:])
        )
        image, boxes = self.transform(tv_tensors.Image(image), boxes)
        return image.as_subclass(torch.Tensor), label, boxes.as_subclass(torch.Tensor)
