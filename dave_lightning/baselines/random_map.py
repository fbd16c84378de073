"""A seeded random map: the floor every explanation-quality metric should beat.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> random_map = RandomAttributor(model, seed=3)
    >>> images = torch.randn(2, 3, 32, 32)
    >>> first = random_map.attribute(images, target=1, image_ids=[10, 11])
    >>> torch.equal(first[1], random_map.attribute(images[1:], target=1, image_ids=[11])[0])
    True
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from dave_lightning._common import check_choice, check_int
from dave_lightning.attributor import Attributor
from dave_lightning.transforms import slot_seed

__all__ = ["RandomAttributor"]

Distribution = Literal["uniform", "normal"]


class RandomAttributor(Attributor):
    """A random map per (image, target class), independent of the model and of the image content.

    The map of an image for class ``c`` is drawn on the CPU from a generator seeded by
    ``(seed, image_id, c)``: it does not depend on the device, on the other images of the batch or
    on the other targets asked for, and the global RNG is never touched. The model is not run.
    Channel-free: ``keep_channels=True`` gives ``(B, [K,] 1, H, W)``.

    Args:
        model: The classifier (only its declared class count is used, to check targets).
        seed: Seed of every map.
        distribution: ``"uniform"`` on [0, 1) (non-negative, like most display maps) or
            ``"normal"`` (standard normal, signed).
        max_batch_size: Accepted for a uniform interface; unused.
        autocast_dtype: Accepted for a uniform interface; unused.

    Raises:
        BadInputError: For an option out of range.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> maps = RandomAttributor(model, distribution="normal").attribute(
        ...     torch.zeros(2, 3, 2, 2), target=torch.tensor([[0, 1], [0, 2]]))
        >>> maps.shape, torch.equal(maps[0, 0], maps[1, 0])  # image ids 0 and 1 differ
        (torch.Size([2, 2, 2, 2]), False)
    """

    runs_model = False

    def __init__(
        self,
        model: nn.Module,
        *,
        seed: int = 0,
        distribution: Distribution = "uniform",
        max_batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model, max_batch_size=max_batch_size, autocast_dtype=autocast_dtype)
        self.seed = check_int("seed", seed, shown=repr)
        check_choice(
            "distribution",
            distribution,
            ("uniform", "normal"),
            shown=repr,
            expected="'uniform' or 'normal'",
        )
        self.distribution: Distribution = distribution

    def __repr__(self) -> str:
        return f"RandomAttributor(seed={self.seed}, distribution={self.distribution!r})"

    def _attribute(self, images: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        height, width = images.shape[-2:]
        draw = torch.rand if self.distribution == "uniform" else torch.randn
        generator = torch.Generator()
        maps = torch.empty(*targets.shape, 1, height, width)
        for row, image_id in enumerate(image_ids):
            for column, target in enumerate(targets[row].tolist()):
                generator.manual_seed(slot_seed(self.seed, image_id, target))
                maps[row, column, 0] = draw(height, width, generator=generator)
        return maps.to(device=images.device, dtype=images.dtype)
