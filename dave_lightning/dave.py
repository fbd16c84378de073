"""The DAVE attributor: Steps I-III combined, batched over images and Monte-Carlo samples.

For each image and sample ``k``: ``x̃_k = (1 - t_k) τ_k(x) + sqrt(1 - (1 - t_k)²) ε_k``; the map is
``m_k = ∂f_c^frozen(x̃_k)/∂x ⊙ x`` (effective gradient of the raw target logit with respect to the
*original* input, times that input). The ``N`` maps are combined per element by the robust mean
(or the plain mean) and summed over colour channels.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> dave = DAVE(model, num_samples=4, noise_alpha=0.3)
    >>> maps = dave.attribute(torch.randn(2, 3, 32, 32), target=torch.tensor([0, 3]))
    >>> maps.shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dave_lightning._batch_size import auto_batch_size
from dave_lightning._common import check_choice, check_int
from dave_lightning._compiled_forward import CompiledForward
from dave_lightning.aggregation import robust_mean
from dave_lightning.attributor import Attributor, Target
from dave_lightning.calibration import CalibrationSettings, SensitivityCurve, run_calibration
from dave_lightning.effective import check_supported, effective_mode
from dave_lightning.errors import BadInputError
from dave_lightning.transforms import (
    LocalTransformDistribution,
    add_noise,
    noise_levels,
    slot_noise,
    slot_seed,
    warp,
)

__all__ = ["DAVE", "DEFAULT_NOISE_ALPHA", "REFERENCE_NOISE_ALPHA", "default_noise_alpha"]

REFERENCE_NOISE_ALPHA: dict[str, float] = {
    "vit_base_patch16_224": 0.3,
    "vit_base_patch16_384": 0.3,
    "vit_small_patch16_224": 0.1,
    "vit_small_patch16_384": 0.1,
    "deit_base_patch16_224": 0.7,
    "deit_base_patch16_384": 0.7,
    "deit_small_patch16_224": 0.5,
    "deit3_base_patch16_224": 0.9,
    "deit3_base_patch16_384": 0.9,
    "deit3_small_patch16_224": 0.5,
    "deit3_small_patch16_384": 0.5,
}
"""The paper's noise levels for the supervised ImageNet models it evaluates, by timm name."""

DEFAULT_NOISE_ALPHA = 0.3
"""The level used for models not in :data:`REFERENCE_NOISE_ALPHA` (the ViT-B/16 value, mid-range).

To choose a level for another model, follow the reference guidance: add noise of growing strength
along the schedule and take the largest level whose target probability the model still tolerates;
``DAVE(model, noise_alpha="auto")`` and :func:`~dave_lightning.calibrate_noise_alpha` do that.
"""

_UNKNOWN_BATCH = 64  # what ``max_batch_size`` holds under "auto" (the rule decides per call)

Aggregation = Literal["robust", "mean"]
_BYTES_PER_MB = 2**20


def default_noise_alpha(model: nn.Module) -> float:
    """The paper's noise level for a timm model it lists, else :data:`DEFAULT_NOISE_ALPHA`.

    The architecture is read from the ``pretrained_cfg`` of ``model`` or of its first submodule
    that has one (so a LightningModule holding a timm model works). Self-supervised DINO weights
    are not covered by the paper's table and get the default.

    Args:
        model: Any module.

    Returns:
        The noise level in [0, 1).

    Example:
        >>> import timm
        >>> default_noise_alpha(timm.create_model("deit3_small_patch16_224", pretrained=False))
        0.5
    """
    for module in model.modules():
        config = getattr(module, "pretrained_cfg", None)
        if isinstance(config, dict) and "architecture" in config:
            if "dino" in str(config.get("tag") or ""):
                return DEFAULT_NOISE_ALPHA
            return REFERENCE_NOISE_ALPHA.get(config["architecture"], DEFAULT_NOISE_ALPHA)
    return DEFAULT_NOISE_ALPHA


def check_noise_alpha(noise_alpha: Any, expected: str = "a number in [0, 1) or None") -> float:
    """Return ``noise_alpha`` as a float in [0, 1), else raise :class:`BadInputError`.

    ``expected`` is what the error message says was expected (the valid values of the caller).
    """
    if (
        isinstance(noise_alpha, bool)
        or not isinstance(noise_alpha, int | float)
        or not (0.0 <= noise_alpha < 1.0)
    ):
        raise BadInputError.for_argument("noise_alpha", expected, repr(noise_alpha))
    return float(noise_alpha)


def _initial_noise_alpha(model: nn.Module, noise_alpha: Any) -> float | None:
    """The level DAVE starts with: ``None`` for ``"auto"`` (not calibrated yet)."""
    if isinstance(noise_alpha, str) and noise_alpha == "auto":
        return None
    if noise_alpha is None:
        return default_noise_alpha(model)
    return check_noise_alpha(noise_alpha, "a number in [0, 1), None or 'auto'")


def _calibration_settings(options: Mapping[str, Any] | None) -> CalibrationSettings:
    """Validate ``calibration_options`` into the settings :meth:`DAVE.calibrate` uses."""
    if options is None:
        return CalibrationSettings()
    valid = ("levels", "tolerance", "statistic", "num_draws")
    if not isinstance(options, Mapping) or set(options) - set(valid):
        raise BadInputError.for_argument(
            "calibration_options",
            "None or a mapping with keys from " + ", ".join(map(repr, valid)),
            repr(options),
        )
    return CalibrationSettings(**options)


def _add_per_image(total: Tensor, image_index: Tensor, maps: Tensor) -> None:
    """``total[i] += the sum of image i's maps`` in a fixed order (CUDA's ``index_add_`` is not).

    Chunks are image-major, so each image's maps are one consecutive run.
    """
    images, counts = torch.unique_consecutive(image_index, return_counts=True)
    for image, run in zip(images.tolist(), maps.split(counts.tolist()), strict=True):
        total[image] += run.sum(dim=0)


def _times_input(gradient: Tensor, originals: Tensor) -> Tensor:
    """``gradient ⊙ originals``, in place when the gradient owns its memory (no extra buffer)."""
    if gradient.is_contiguous() and gradient.shape == originals.shape:
        return gradient.mul_(originals)
    return gradient * originals


class DAVE(Attributor):
    """Distribution-aware Attribution via ViT Gradient dEcomposition.

    Cost: ``num_samples`` forward and backward passes per image, stacked into batches of up to
    ``max_batch_size`` model inputs. Results are bitwise reproducible for a seed on the CPU, and on
    a GPU under ``torch.use_deterministic_algorithms(True)`` (DAVE's own steps add in a fixed
    order there too; the flag keeps library kernels such as cuDNN's from choosing atomics), and
    equal (to float tolerance) for any ``max_batch_size``; the randomness of an image depends
    only on ``seed``, its ``image_id`` and the sample index. Each call starts from ``seed``
    again, so the same images get the same maps on every call while the model is unchanged.

    Speed: the passes hold ``max_batch_size`` inputs, by default ``"auto"``, a size that fits
    the device and the model (rule below, measured with ``benchmarks/bench_dave.py --sweep``).
    The robust aggregation runs in NumPy on the CPU and with ``torch.median`` elsewhere; off the
    CPU all slots' noise is one counter-based draw. Precision: float32 unless
    ``autocast_dtype`` asks for autocast; the monitor and ``explain`` ask for bfloat16 by default
    on a GPU with native bf16, whose maps were measured as faithful as float32's (see
    :mod:`dave_lightning.precision`). ``compile=True`` runs the model's forward and backward in
    effective mode through ``torch.compile``: the first call pays the compilation, one graph
    serves every pass size (see
    :mod:`dave_lightning._compiled_forward`). Each pass agrees with eager to about 1e-6 of the
    gradient's largest value (the mean aggregation's maps too); the robust aggregation's trimming
    is discontinuous, so the odd element within rounding of its threshold flips (14 of 1.2
    million elements in one ViT-Ti/16 run, where the maps differed by up to 4–6 % of their
    maximum). On 2 quiet CPU cores (ViT-Ti/16, 8 images, N = 16) it took 0.94x eager's time
    after a 20 s first call; on a GPU it has not been measured.

    With ``noise_alpha="auto"`` the level is measured on the model (see
    :func:`~dave_lightning.calibrate_noise_alpha`, keyed by the same ``seed`` and ``image_ids``):
    each :meth:`attribute` call first calibrates on the images it is given, so the same images
    and seed give the same level and the same maps, but a set attributed in parts may get one
    level per part. :meth:`calibrate` measures it once on a batch of your choice (a fixed probe
    set, say) and keeps it for every later call until it is called again (:meth:`use_calibration`
    does the same with a curve measured elsewhere); both work whatever ``noise_alpha`` the
    attributor was built with. :attr:`noise_alpha` holds the level in use
    (``None`` before the first calibration), :attr:`calibration` the last sensitivity curve.

    Args:
        model: A timm ViT supported by :func:`~dave_lightning.effective_mode`.
        num_samples: ``N``, Monte-Carlo samples per image (paper: 50 for metrics, 100 for figures).
        noise_alpha: Largest noise level ``t`` of the schedule, in [0, 1); ``None`` picks
            :func:`default_noise_alpha` (the paper's value for the models it lists); ``"auto"``
            calibrates it on the model.
        flip_prob: Probability of a horizontal flip.
        rotation: Maximum absolute rotation in degrees.
        translation: Maximum absolute translation as a fraction of width/height.
        scale: ``(low, high)`` range of the scale factor.
        aggregation: ``"robust"`` (MAD-trimmed mean, as the reference) or ``"mean"`` (streams:
            memory does not grow with ``num_samples``).
        max_batch_size: Largest number of model inputs per forward/backward pass, or ``"auto"``
            (default): a size that fits the device and the model, from the model's activation
            size per input (depth · tokens · width) and the device: on the CPU a budget of
            2.5 GiB, at most 32 inputs (ViT-Ti/S at 224: 32, ViT-B: 16); on CUDA half the free
            device memory, at most 256 (see :mod:`dave_lightning._batch_size` for the rule and
            ``benchmarks/bench_dave.py --sweep`` for the measurement). The maps do not depend
            on it.
        seed: Seed of every random draw.
        memory_budget_mb: Soft limit for the robust aggregation's per-sample buffer; images are
            processed in groups that fit it (at least one image per group). The aggregation's
            own workspace is bounded separately (about 100 MB, whatever the buffer).
        autocast_dtype: ``None`` computes in float32 (or the input's dtype) with autocast off;
            e.g. ``torch.bfloat16`` opts in to autocast.
        affine_modules: Extra module classes to treat as affine in effective mode.
        calibration_options: Options of the calibration (``levels``, ``tolerance``,
            ``statistic``, ``num_draws``; see :func:`~dave_lightning.calibrate_noise_alpha`).
        compile: Run the passes' model forward and backward through ``torch.compile``
            (opt-in; the model is not changed; needs a C++ compiler on the CPU).

    Raises:
        BadInputError: For an option out of range.
        UnsupportedModelError: When the model holds a module effective mode cannot freeze.
    """

    def __init__(
        self,
        model: nn.Module,
        num_samples: int = 50,
        noise_alpha: float | Literal["auto"] | None = None,
        flip_prob: float = 0.5,
        rotation: float = 20.0,
        translation: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
        aggregation: Aggregation = "robust",
        max_batch_size: int | Literal["auto"] = "auto",
        seed: int = 0,
        memory_budget_mb: float = 512.0,
        autocast_dtype: torch.dtype | None = None,
        affine_modules: Sequence[type[nn.Module]] = (),
        calibration_options: Mapping[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        if isinstance(max_batch_size, str):
            if max_batch_size != "auto":
                raise BadInputError.for_argument(
                    "max_batch_size", "a positive int or 'auto'", repr(max_batch_size)
                )
            explicit_batch_size = _UNKNOWN_BATCH
        else:
            explicit_batch_size = max_batch_size
        super().__init__(model, max_batch_size=explicit_batch_size, autocast_dtype=autocast_dtype)
        self.auto_batch_size = isinstance(max_batch_size, str)
        """Whether the batch size is chosen per call by the ``"auto"`` rule."""
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.noise_alpha: float | None = _initial_noise_alpha(model, noise_alpha)
        self.calibration_settings = _calibration_settings(calibration_options)
        self.calibration: SensitivityCurve | None = None
        self._calibrate_each_call = self.noise_alpha is None
        self.transforms = LocalTransformDistribution(flip_prob, rotation, translation, scale)
        check_choice(
            "aggregation",
            aggregation,
            ("robust", "mean"),
            shown=repr,
            expected="'robust' or 'mean'",
        )
        self.aggregation: Aggregation = aggregation
        self.seed = check_int("seed", seed, shown=repr)
        if not (isinstance(memory_budget_mb, int | float) and memory_budget_mb > 0):
            raise BadInputError.for_argument(
                "memory_budget_mb", "a positive number", repr(memory_budget_mb)
            )
        self.memory_budget_mb = float(memory_budget_mb)
        self.affine_modules = tuple(affine_modules)
        check_supported(model, self.affine_modules)
        if not isinstance(compile, bool):
            raise BadInputError.for_argument("compile", "True or False", repr(compile))
        self.compile = compile
        """Whether the passes run the model through ``torch.compile`` (see the class notes)."""
        self._compiled_forward = CompiledForward(model)

    def __repr__(self) -> str:
        noise_alpha = repr("auto") if self._calibrate_each_call else self.noise_alpha
        return (
            f"DAVE(num_samples={self.num_samples}, noise_alpha={noise_alpha}, "
            f"transforms={self.transforms}, aggregation={self.aggregation!r}, "
            f"max_batch_size={self._batch_size_setting!r}, seed={self.seed})"
        )

    @property
    def _batch_size_setting(self) -> int | str:
        return "auto" if self.auto_batch_size else self.max_batch_size

    def batch_size_for(self, images: Tensor) -> int:
        """The number of model inputs per pass for ``images``: ``max_batch_size`` or the auto rule.

        Args:
            images: ``(B, C, H, W)`` images on the device of the passes.

        Returns:
            The batch size of the passes.
        """
        if not self.auto_batch_size or not isinstance(images, Tensor) or images.dim() != 4:
            return self.max_batch_size  # bad images are rejected by the input checks that follow
        dtype = self.autocast_dtype or images.dtype
        return auto_batch_size(self.model, images.shape[1:], images.device, dtype)

    def calibrate(
        self, images: Tensor, target: Target, *, image_ids: Sequence[int] | Tensor | None = None
    ) -> float:
        """Measure the noise level on ``images`` and use it until the next ``calibrate``.

        Args:
            images: ``(B, C, H, W)`` calibration images the model classifies confidently.
            target: Their classes, as for :meth:`attribute` (labels or predictions).
            image_ids: Keys of each image's noise (default ``0..B-1``).

        Returns:
            The chosen level, now :attr:`noise_alpha`; the curve is :attr:`calibration`.

        Raises:
            BadInputError: For bad images, targets or ids.

        Example:
            >>> import torch
            >>> from timm.models.vision_transformer import VisionTransformer
            >>> model = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=1,
            ...                           num_heads=2, num_classes=3)
            >>> dave = DAVE(model, num_samples=4, noise_alpha="auto")
            >>> images = torch.randn(4, 3, 16, 16)
            >>> alpha = dave.calibrate(images, model(images).argmax(dim=1))
            >>> alpha == dave.noise_alpha == dave.calibration.noise_alpha
            True
        """
        alpha = self._calibrate_on(images, target, image_ids)
        self._calibrate_each_call = False
        return alpha

    def use_calibration(self, curve: SensitivityCurve) -> float:
        """Fix the level to a curve's choice, as :meth:`calibrate` would, until the next call.

        For curves measured elsewhere, e.g. merged across DDP processes with
        :func:`~dave_lightning.calibration.select_noise_alpha`.

        Args:
            curve: A :class:`~dave_lightning.SensitivityCurve`.

        Returns:
            ``curve.noise_alpha``, now :attr:`noise_alpha`.

        Raises:
            BadInputError: When ``curve`` is not a sensitivity curve.
        """
        if not isinstance(curve, SensitivityCurve):
            raise BadInputError.for_argument("curve", "a SensitivityCurve", type(curve).__name__)
        self.noise_alpha = check_noise_alpha(curve.noise_alpha)
        self.calibration = curve
        self._calibrate_each_call = False
        return self.noise_alpha

    def attribute(
        self,
        images: Tensor,
        target: Target,
        *,
        keep_channels: bool = False,
        image_ids: Sequence[int] | Tensor | None = None,
    ) -> Tensor:
        """Attribute as :meth:`Attributor.attribute`; ``"auto"`` first calibrates on ``images``.

        Under ``noise_alpha="auto"``, until :meth:`calibrate` is called, every call measures the
        level on the images (and targets, ids) it is given, then attributes with it.
        """
        if self._calibrate_each_call:
            self._calibrate_on(images, target, image_ids)
        return super().attribute(images, target, keep_channels=keep_channels, image_ids=image_ids)

    def _calibrate_on(
        self, images: Tensor, target: Target, image_ids: Sequence[int] | Tensor | None
    ) -> float:
        alpha, self.calibration = run_calibration(
            self.model,
            images,
            target,
            self.calibration_settings,
            seed=self.seed,
            max_batch_size=self.batch_size_for(images),
            image_ids=image_ids,
            autocast_dtype=self.autocast_dtype,
            stacklevel=4,  # blame the caller of `calibrate` or `attribute`
        )
        self.noise_alpha = alpha
        return alpha

    def _attribute(self, images: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        batch, channels, height, width = images.shape
        per_image = self.num_samples * targets.shape[1] * channels * height * width
        if self.aggregation == "robust":
            budget = self.memory_budget_mb * _BYTES_PER_MB
            group_size = max(1, math.floor(budget / (per_image * images.element_size())))
        else:
            group_size = batch  # streaming: memory is (B, K, C, H, W) whatever N is
        if self.noise_alpha is None:  # unreachable: `attribute` calibrates first
            raise RuntimeError("DAVE: noise_alpha='auto' was never calibrated")
        levels = noise_levels(self.num_samples, self.noise_alpha)
        passes = self.batch_size_for(images)
        out = []
        with effective_mode(self.model, self.affine_modules):
            for start in range(0, batch, group_size):
                group = slice(start, start + group_size)
                out.append(
                    self._attribute_group(
                        images[group], targets[group], image_ids[group], levels, passes
                    )
                )
        return torch.cat(out)

    def _attribute_group(
        self, images: Tensor, targets: Tensor, image_ids: list[int], levels: Tensor, passes: int
    ) -> Tensor:
        count = images.shape[0]
        robust = self.aggregation == "robust"
        shape = (count, targets.shape[1], *images.shape[1:])
        # robust: every sample is kept, samples innermost so that sorting them is contiguous,
        # (G, K, C, H, W, N); mean: a running sum, (G, K, C, H, W)
        kept = images.new_empty(*shape, self.num_samples) if robust else images.new_zeros(shape)
        for image_index, sample_index in self._chunks(count, passes):
            maps = self._slot_maps(images, targets, image_ids, image_index, sample_index, levels)
            image_index = image_index.to(images.device)
            if robust:
                kept[image_index, ..., sample_index.to(images.device)] = maps
            else:
                _add_per_image(kept, image_index, maps)
        return robust_mean(kept, dim=-1) if robust else kept / self.num_samples

    def _forward(self, inputs: Tensor) -> Tensor:
        """The model's logits for one pass: eager, or compiled once for every pass size."""
        if self.compile:
            return self._compiled_forward(inputs)
        logits: Tensor = self.model(inputs)
        return logits

    def _chunks(self, count: int, passes: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(image, sample) index pairs, image-major, in chunks of ``passes`` slots."""
        slots = torch.arange(count * self.num_samples)
        for chunk in slots.split(passes):
            yield chunk // self.num_samples, chunk % self.num_samples

    def _slot_maps(
        self,
        images: Tensor,
        targets: Tensor,
        image_ids: list[int],
        image_index: Tensor,
        sample_index: Tensor,
        levels: Tensor,
    ) -> Tensor:
        """``(n, K, C, H, W)`` maps ``∂f(x̃)/∂x ⊙ x`` for one chunk of slots."""
        seeds = [
            slot_seed(self.seed, image_ids[i], k)
            for i, k in zip(image_index.tolist(), sample_index.tolist(), strict=True)
        ]
        device_index = image_index.to(images.device)
        originals = images[device_index]
        leaf = originals.clone().requires_grad_(True)
        inputs = leaf if self.transforms.is_identity else warp(leaf, self.transforms.sample(seeds))
        chunk_levels = levels[sample_index]
        if bool((chunk_levels > 0).any()):
            noise = slot_noise(seeds, images.shape[1:], images.device, images.dtype)
            inputs = add_noise(inputs, chunk_levels, noise)
        scores = self._target_scores(self._forward(inputs), targets[device_index])
        count = scores.shape[1]
        maps = []
        for k in range(count):
            (gradient,) = torch.autograd.grad(scores[:, k].sum(), leaf, retain_graph=k + 1 < count)
            maps.append(_times_input(gradient, originals))
        return maps[0].unsqueeze(1) if len(maps) == 1 else torch.stack(maps, dim=1)
