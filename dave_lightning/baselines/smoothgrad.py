"""SmoothGrad (Smilkov et al., 2017): the input gradient averaged over noisy copies of the input.

``SG(x) = (1/N) Σ_k ∂f_c(x + sigma ε_k)/∂x`` with ``ε_k ~ N(0, I)``, the signed gradient of the raw
target logit ``f_c`` — what Captum's ``NoiseTunnel(Saliency(f), nt_type="smoothgrad")`` with
``abs=False`` computes. The noise loop is written here rather than delegated to ``NoiseTunnel``
because ``NoiseTunnel`` draws from the global RNG: here ``ε_k`` of an image comes from a local
generator keyed by ``seed``, the image's ``image_id`` and ``k`` (the same stream as DAVE's noise,
:func:`~dave_lightning.transforms.slot_noise`), so results are bitwise reproducible, independent of
how images are grouped into batches, and the global RNG is never touched. The gradients on the
noisy inputs are still computed by Captum's ``Saliency``.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> images = torch.randn(2, 3, 32, 32)
    >>> smoothgrad = SmoothGrad(model, nt_samples=4)
    >>> torch.equal(smoothgrad.attribute(images, 1), smoothgrad.attribute(images, 1))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import Saliency
from torch import Tensor, nn

from dave_lightning._common import check_int
from dave_lightning.baselines._captum_adapter import RowAttributor
from dave_lightning.errors import BadInputError, ConfigurationError
from dave_lightning.transforms import slot_noise, slot_seed

__all__ = ["DEFAULT_NOISE_LEVEL", "SmoothGrad"]

DEFAULT_NOISE_LEVEL = 0.15
"""The noise's standard deviation as a fraction of each image's value range,
``sigma = 0.15 (max(x) - min(x))``: the middle of the 10-20 % the SmoothGrad paper recommends; it
suits any input normalisation."""


def _check_positive_number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value < float("inf"):
        raise BadInputError.for_argument(name, "a finite number > 0, or None", repr(value))
    return float(value)


class SmoothGrad(RowAttributor):
    """The signed input gradient of the raw target logit, averaged over ``nt_samples`` noisy inputs.

    The noise level is either absolute, ``stdevs`` (Captum's meaning: sigma in the model's
    normalised input space), or relative, ``noise_level`` (sigma as a fraction of each image's
    range ``max(x) - min(x)``, as in the SmoothGrad paper). Give at most one; with neither, the
    relative :data:`DEFAULT_NOISE_LEVEL` is used. Sample ``k`` of an image has the same noise for
    every target, so a target's map does not depend on the other targets asked for.

    Cost: ``nt_samples`` forward and backward passes per (image, target) row; the (row, sample)
    inputs of all rows are packed into passes of up to ``max_batch_size`` (this replaces
    ``NoiseTunnel``'s ``nt_samples_batch_size``).

    Args:
        model: A classifier returning ``(B, num_classes)`` raw logits.
        nt_samples: ``N``, noisy samples per image.
        stdevs: Absolute sigma, or ``None``.
        noise_level: Relative sigma, or ``None``.
        seed: Seed of the noise; each call starts from it again.
        max_batch_size: Largest number of model inputs per forward/backward pass.
        autocast_dtype: ``None`` (default) computes with autocast off; e.g. ``torch.bfloat16``
            opts in.

    Raises:
        BadInputError: For an option out of range.
        ConfigurationError: When both ``stdevs`` and ``noise_level`` are given.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> maps = SmoothGrad(model, nt_samples=3, stdevs=0.5).attribute(
        ...     torch.randn(1, 3, 2, 2), target=0, keep_channels=True)
        >>> torch.allclose(maps[0], model[1].weight[0].reshape(3, 2, 2))  # constant gradient
        True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        nt_samples: int = 50,
        stdevs: float | None = None,
        noise_level: float | None = None,
        seed: int = 0,
        max_batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model, max_batch_size=max_batch_size, autocast_dtype=autocast_dtype)
        self.nt_samples = check_int("nt_samples", nt_samples, minimum=1)
        self.stdevs = _check_positive_number("stdevs", stdevs)
        self.noise_level = _check_positive_number("noise_level", noise_level)
        if self.stdevs is not None and self.noise_level is not None:
            raise ConfigurationError(
                f"`stdevs` ({stdevs!r}, absolute) and `noise_level` ({noise_level!r}, relative to "
                "each image's range) both set the noise; give at most one."
            )
        if self.stdevs is None and self.noise_level is None:
            self.noise_level = DEFAULT_NOISE_LEVEL
        self.seed = check_int("seed", seed, shown=repr)

    def __repr__(self) -> str:
        if self.stdevs is not None:
            noise = f"stdevs={self.stdevs}"
        else:
            noise = f"noise_level={self.noise_level}"
        return (
            f"SmoothGrad(nt_samples={self.nt_samples}, {noise}, seed={self.seed}, "
            f"max_batch_size={self.max_batch_size})"
        )

    def _rows_per_call(self, total_rows: int) -> int:
        return total_rows  # all rows at once: their samples are packed into passes below

    def _attribute_rows(self, inputs: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        sums = torch.zeros_like(inputs)
        sigma = self._sigma(inputs)
        saliency = Saliency(self._row_scores)
        slots = torch.arange(inputs.shape[0] * self.nt_samples)
        for chunk in slots.split(self.max_batch_size):
            rows, samples = chunk // self.nt_samples, chunk % self.nt_samples
            seeds = [
                slot_seed(self.seed, image_ids[row], sample)
                for row, sample in zip(rows.tolist(), samples.tolist(), strict=True)
            ]
            rows = rows.to(inputs.device)
            noise = slot_noise(seeds, inputs.shape[1:], inputs.device, inputs.dtype)
            noisy = inputs[rows] + sigma[rows, None, None, None] * noise
            gradients = saliency.attribute(
                self._leaf(noisy), abs=False, additional_forward_args=(targets[rows],)
            )
            sums.index_add_(0, rows, gradients.detach())
        return sums / self.nt_samples

    def _sigma(self, inputs: Tensor) -> Tensor:
        """``(n,)`` noise standard deviations, one per row."""
        if self.stdevs is not None:
            return inputs.new_full((inputs.shape[0],), self.stdevs)
        flat = inputs.flatten(1)
        level = DEFAULT_NOISE_LEVEL if self.noise_level is None else self.noise_level
        return level * (flat.amax(dim=1) - flat.amin(dim=1))
