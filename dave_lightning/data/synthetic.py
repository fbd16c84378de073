"""The embedded dataset: seeded shapes on clutter, with labels, tight boxes and exact masks.

Each image shows one shape (its class) on a cluttered background: a smooth colour field under
soft blobs, hard-edged stripes, thin strokes and pixel noise (``clutter`` scales their
contrast). The shape has a random position, size (radius 12-20 % of the shorter side), tilt
(upright within 15 degrees) and colour: dark or light, whichever contrasts with the background
beneath it, with a random tint. Colour, size and position are drawn independently of the class,
so only the shape's form tells the class. Images are rendered in ``[0, 1]``, quantised to 8 bits
like a photo, then normalised with ``mean``/``std`` (ImageNet's by default, as timm expects).

Example:
    >>> from dave_lightning.data import SyntheticShapes
    >>> dataset = SyntheticShapes("train", length=12, image_size=(48, 64))
    >>> image, label, box = dataset[0]
    >>> image.shape, image.dtype, box.shape
    (torch.Size([3, 48, 64]), torch.float32, torch.Size([1, 4]))
    >>> dataset.classes[label] in dataset.classes, dataset.num_classes
    (True, 6)
    >>> dataset.denormalize(image).min() >= 0
    tensor(True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import SupportsIndex

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dave_lightning.data import _render
from dave_lightning.data._checks import (
    check_choice,
    check_fraction,
    check_image_size,
    check_index,
    check_int,
    check_names,
    check_triple,
    describe,
)
from dave_lightning.errors import BadInputError

__all__ = [
    "DEFAULT_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "ShapeSample",
    "ShapesWithMasks",
    "SyntheticShapes",
    "denormalize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHAPE_NAMES: tuple[str, ...] = tuple(_render.SHAPES)
"""Every shape a class can be: ``disc, square, triangle, cross, ring, bar, frame``."""
DEFAULT_CLASSES: tuple[str, ...] = SHAPE_NAMES[:6]
SPLITS = ("train", "val", "test")
EVAL_CUES = ("uncorrelated", "absent", "correlated")
CUE_PLACEMENTS = ("corner", "inset")
MIN_SIDE = 16

_LABEL_STREAM, _IMAGE_STREAM, _CUE_STREAM = 1, 2, 3


@dataclass(frozen=True)
class ShapeSample:
    """Everything known about one sample.

    Attributes:
        image: ``(3, H, W)`` float32 in the normalised input space.
        pixels: ``(3, H, W)`` uint8, the same image before normalisation (for display).
        label: The class index.
        box: ``(1, 4)`` float32 ``x1, y1, x2, y2``: the tight, end-exclusive pixel box of ``mask``.
        mask: ``(H, W)`` bool, exactly the object's pixels.
        cue_box: ``(n, 4)`` float32, the spurious mark's box; ``n = 0`` when there is no mark.
        cue_class: The class whose colour the mark has, ``None`` when there is no mark.
    """

    image: Tensor
    pixels: Tensor
    label: int
    box: Tensor
    mask: Tensor
    cue_box: Tensor
    cue_class: int | None


def denormalize(
    images: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Map normalised ``(..., 3, H, W)`` images back to float ``[0, 1]`` for display.

    Example:
        >>> import torch
        >>> denormalize(torch.zeros(3, 2, 2))[:, 0, 0]
        tensor([0.4850, 0.4560, 0.4060])
    """
    if (
        not isinstance(images, Tensor)
        or not images.is_floating_point()
        or images.dim() < 3
        or images.shape[-3] != 3
    ):
        raise BadInputError.for_argument(
            "images", "a floating-point (..., 3, H, W) tensor", describe(images)
        )
    mean_t = torch.tensor(check_triple("mean", mean), dtype=images.dtype, device=images.device)
    std_t = torch.tensor(
        check_triple("std", std, positive=True), dtype=images.dtype, device=images.device
    )
    return (images * std_t.view(3, 1, 1) + mean_t.view(3, 1, 1)).clamp(0.0, 1.0)


class SyntheticShapes(Dataset[tuple[Tensor, int, Tensor]]):
    """Seeded shapes on clutter; ``dataset[i]`` is ``(image, label, box)``.

    Sample ``i`` is a pure function of ``(seed, split, i)``: it does not depend on access order,
    worker processes or the global RNG (which it never touches). Labels are balanced: every block
    of ``num_classes`` consecutive indices holds each class once, in a seeded order.

    With ``spurious=True`` every training image gets a small solid square in a corner at least one
    pixel clear of the object's box. With probability ``spurious_prob`` its colour is the label's
    palette colour, otherwise a uniformly random palette colour (which can also be the label's).
    ``eval_cue`` says what the ``"val"`` and ``"test"`` splits get: a mark of random colour
    (``"uncorrelated"``, the default: same look, no information), no mark (``"absent"``), or the
    training correlation (``"correlated"``). Everything else in an image is the same with and
    without ``spurious``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; each draws from its own random stream.
        length: The number of samples.
        seed: The dataset's seed (any integer).
        image_size: ``S`` or ``(H, W)``, each side at least 16.
        classes: Shape names, one per class, from :data:`SHAPE_NAMES` (at least two; default
            :data:`DEFAULT_CLASSES`).
        clutter: The background's contrast in ``[0, 1]``; 0 is flat grey. The default 0.5 keeps
            a tiny ViT learning within minutes while the clutter still matters.
        spurious: Plant the class-correlated corner mark (see above).
        spurious_prob: How often the mark's colour is the label's, before chance agreement.
        eval_cue: The mark in the ``"val"``/``"test"`` splits when ``spurious`` is set.
        cue_placement: ``"corner"`` puts the mark in a free corner; ``"inset"`` at a free
            quadrant centre (a corner only when none is free). Attribution methods that average
            over rotations about the image centre, like DAVE, rotate corners out of the frame
            and so barely see a corner mark; an inset mark stays inside.
        mean: Per-channel mean of the normalisation.
        std: Per-channel standard deviation of the normalisation.
        cache: Keep rendered samples in memory (about ``4 * H * W`` bytes each; one cache per
            DataLoader worker process).

    Attributes:
        classes: The class names, in label order.
        image_size: ``(H, W)``.
        cue_colours: ``(num_classes, 3)`` float colours in ``[0, 1]`` of the spurious mark.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        length: int = 2048,
        seed: int = 0,
        image_size: int | tuple[int, int] = 64,
        classes: Sequence[str] | None = None,
        clutter: float = 0.5,
        spurious: bool = False,
        spurious_prob: float = 1.0,
        eval_cue: str = "uncorrelated",
        cue_placement: str = "corner",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        cache: bool = False,
    ) -> None:
        self.split = check_choice("split", split, SPLITS)
        self.length = check_int("length", length, minimum=1)
        self.seed = check_int("seed", seed)
        self.image_size = check_image_size(image_size, MIN_SIDE)
        self.classes = (
            list(DEFAULT_CLASSES)
            if classes is None
            else check_names("classes", classes, SHAPE_NAMES, minimum=2)
        )
        self.clutter = check_fraction("clutter", clutter)
        self.spurious = bool(spurious)
        self.spurious_prob = check_fraction("spurious_prob", spurious_prob)
        self.eval_cue = check_choice("eval_cue", eval_cue, EVAL_CUES)
        self.cue_placement = check_choice("cue_placement", cue_placement, CUE_PLACEMENTS)
        self.mean = check_triple("mean", mean)
        self.std = check_triple("std", std, positive=True)
        self.cue_colours = _render.class_colours(self.num_classes)
        self._canvas = _render.Canvas.of_size(*self.image_size)
        self._stream = (self.seed, SPLITS.index(self.split))
        self._mean = torch.tensor(self.mean).view(3, 1, 1)
        self._std = torch.tensor(self.std).view(3, 1, 1)
        self._cache: dict[int, ShapeSample] | None = {} if cache else None

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, length={self.length}, seed={self.seed}, "
            f"image_size={self.image_size}, classes={self.classes}, spurious={self.spurious})"
        )

    def __getitem__(self, index: SupportsIndex) -> tuple[Tensor, int, Tensor]:
        sample = self.sample(index)
        return sample.image, sample.label, sample.box

    def with_masks(self) -> ShapesWithMasks:
        """A view of this dataset whose items are ``(image, label, box, mask)``."""
        return ShapesWithMasks(self)

    def sample(self, index: SupportsIndex) -> ShapeSample:
        """Render sample ``index`` (negative indices count from the end) with all it carries.

        Raises:
            IndexError: When ``index`` is outside the dataset (as iteration expects).
        """
        index = self._position(index)
        if self._cache is None:
            return self._render(index)
        if index not in self._cache:  # keep the 8-bit pixels, not the float32 image
            self._cache[index] = dataclasses.replace(self._render(index), image=torch.empty(0))
        cached = self._cache[index]  # hand out copies: callers may modify what they get
        return ShapeSample(
            image=self._normalize(cached.pixels),
            pixels=cached.pixels.clone(),
            label=cached.label,
            box=cached.box.clone(),
            mask=cached.mask.clone(),
            cue_box=cached.cue_box.clone(),
            cue_class=cached.cue_class,
        )

    def label(self, index: SupportsIndex) -> int:
        """The class of sample ``index``, without rendering it."""
        index = self._position(index)
        block_order = torch.randperm(
            self.num_classes,
            generator=_render.generator(*self._stream, _LABEL_STREAM, index // self.num_classes),
        )
        return int(block_order[index % self.num_classes])

    def denormalize(self, images: Tensor) -> Tensor:
        """Undo this dataset's normalisation: ``(..., 3, H, W)`` float in ``[0, 1]``."""
        return denormalize(images, self.mean, self.std)

    def _position(self, index: SupportsIndex) -> int:
        position = check_index(index)
        if not -self.length <= position < self.length:
            raise IndexError(f"index {position} is out of range for a dataset of {self.length}")
        return position % self.length

    def _render(self, index: int) -> ShapeSample:
        label = self.label(index)
        canvas = self._canvas
        gen = _render.generator(*self._stream, _IMAGE_STREAM, index)
        image = _render.background(canvas, gen, self.clutter)
        mask = _render.shape_mask(canvas, self.classes[label], gen)
        colour = _render.contrasting_colour(image, mask, gen)
        image = torch.where(mask, colour.view(3, 1, 1), image)
        noise_level = 0.02 + 0.04 * float(torch.rand((), generator=gen))
        image = image + noise_level * torch.randn(image.shape, generator=gen)
        box = _render.tight_box(mask)
        cue_box, cue_class = self._cue(index, label, box)
        if cue_class is not None:
            x1, y1, x2, y2 = (int(v) for v in cue_box[0].tolist())
            image[:, y1:y2, x1:x2] = self.cue_colours[cue_class].view(3, 1, 1)
        pixels = (image.clamp(0.0, 1.0) * 255).round().to(torch.uint8)
        return ShapeSample(self._normalize(pixels), pixels, label, box, mask, cue_box, cue_class)

    def _cue(self, index: int, label: int, box: Tensor) -> tuple[Tensor, int | None]:
        mode = "correlated" if self.split == "train" else self.eval_cue
        if not self.spurious or mode == "absent":
            return torch.zeros(0, 4), None
        gen = _render.generator(*self._stream, _CUE_STREAM, index)
        cue_box = _render.cue_box(self._canvas, box, gen, self.cue_placement)
        agrees = float(torch.rand((), generator=gen)) < self.spurious_prob
        random_class = int(torch.randint(self.num_classes, (), generator=gen))
        return cue_box, label if mode == "correlated" and agrees else random_class

    def _normalize(self, pixels: Tensor) -> Tensor:
        return (pixels.to(torch.float32) / 255 - self._mean) / self._std


class ShapesWithMasks(Dataset[tuple[Tensor, int, Tensor, Tensor]]):
    """A :class:`SyntheticShapes` whose items also carry the ``(H, W)`` bool object mask.

    Example:
        >>> masked = SyntheticShapes("val", length=4, image_size=32).with_masks()
        >>> image, label, box, mask = masked[0]
        >>> mask.shape, bool(mask.any())
        (torch.Size([32, 32]), True)
    """

    def __init__(self, dataset: SyntheticShapes) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: SupportsIndex) -> tuple[Tensor, int, Tensor, Tensor]:
        sample = self.dataset.sample(index)
        return sample.image, sample.label, sample.box, sample.mask
