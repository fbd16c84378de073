"""AttributionMonitor: track explanation quality over epochs in TensorBoard.

Attach it to a ``pytorch_lightning.Trainer``; at the end of validation runs it explains a
fixed probe set of validation images with DAVE (and any baselines), scores the maps with GridPG,
EnergyPG and pixel deletion, and logs the scores, a custom-scalars layout, overlays and deletion
curves. Training is bit-for-bit unchanged by it. The hooks live in
:mod:`dave_lightning.callbacks._hooks`, the options in :mod:`dave_lightning.callbacks._config`.
"""

from __future__ import annotations

import pytorch_lightning as pl

from dave_lightning.callbacks._failures import MonitorError
from dave_lightning.callbacks._hooks import MonitorHooks

__all__ = ["AttributionMonitor", "MonitorError"]


class AttributionMonitor(MonitorHooks, pl.Callback):
    """Track explanation quality over epochs in TensorBoard (a ``pytorch_lightning`` callback).

    At the end of validation runs it explains a fixed probe set of validation images with DAVE
    (and any baselines), scores the maps and logs scores, layout, overlays and deletion curves;
    training is bit-for-bit unchanged by it. For a ``lightning.pytorch`` trainer use
    :class:`dave_lightning.callbacks.lightning.AttributionMonitor` (the same options).

    Args:
        methods: Attribution methods by registry name (``dave_lightning.available_attributors()``).
        metrics: Any of ``"grid_pg"``, ``"energy_pg"``, ``"deletion_auc"`` and
            ``"patch_artifact"`` (share of a map's spectral energy on the patch-grid lattice).
        num_images: Size of the probe set, chosen once from the validation data.
        num_samples: DAVE's Monte-Carlo samples per image.
        noise_alpha: DAVE's noise level; ``None`` uses the paper's value for the model, ``"auto"``
            calibrates it on the probe set at the first evaluation and keeps that level (logged
            as ``{log_prefix}/dave/noise_alpha``; kept in the callback's state, so a resumed run
            keeps it). Every evaluation still measures what a re-calibration would choose, as a
            drift signal: ``{log_prefix}/dave/noise_alpha_recalibrated``, the sensitivity curve
            as scalars ``{log_prefix}/dave/noise_sensitivity/t_0.30``, ... (retained score per
            level, one custom-scalars chart) and, when figures are logged, as a figure. Needs
            ``"dave"`` in ``methods``, as do DAVE's other options except ``num_samples``.
        flip_prob: DAVE's flip probability.
        rotation: DAVE's maximum rotation in degrees.
        translation: DAVE's maximum translation (fraction of the size).
        scale: DAVE's scale range.
        aggregation: DAVE's ``"robust"`` or ``"mean"`` aggregation.
        method_options: Extra options per method, e.g. ``{"smoothgrad": {"nt_samples": 20}}``.
        max_batch_size: Largest number of inputs per attribution pass, or ``"auto"`` (default):
            DAVE picks a size that fits the device and the model (see
            :class:`~dave_lightning.DAVE`), the other methods use their own default (64), and
            GridPG's grid check scores 64 images per pass.
        every_n_epochs: Explain once per n epochs: the first validation run at or after the end
            of epoch n, 2n, ... ``None`` (with ``every_n_validations=None``): every validation
            run of ``fit`` is explained, mid-epoch and step-based ones included (never the
            sanity check). Excludes ``every_n_validations``.
        every_n_validations: Explain the k-th, 2k-th, ... validation run of ``fit``. Excludes
            ``every_n_epochs``. A schedule that cannot run in a ``fit`` (more epochs or
            validations than it has, an empty validation loader) is a warning at its start.
        log_images: How many probe images get overlays each epoch (0 turns figures off).
        target: Explain the ``"label"`` or the model's prediction (``"pred"``).
        grid_size: GridPG grid side (2 gives 2×2 grids of four distinct classes).
        max_grids: Most GridPG grids composed from the probe set.
        grid_min_confidence: Keep only images the model classifies correctly with at least this
            softmax confidence when composing grids (the paper's protocol); ``None`` keeps all.
        grid_full_resolution: Compose grids at ``grid_size``× the input size with cells at full
            resolution (for models built with ``dynamic_img_size=True``) instead of downscaling.
        deletion_steps: Pixel-deletion steps.
        deletion_max_fraction: Fraction of pixels removed at the last step.
        deletion_order: ``"most_relevant_first"`` (lower AUC is better) or
            ``"least_relevant_first"`` (higher AUC is better).
        deletion_replacement: ``"blur"``, ``"zero"`` or ``"mean"``.
        deletion_batch_size: Perturbed copies per forward pass.
        seed: Seed of the probe choice, the grids and every random draw.
        log_prefix: Tag prefix: scalars are ``{log_prefix}/{method}/{metric}``.
        on_error: ``"warn"`` (count, log as ``{log_prefix}/failures``, warn, go on) or
            ``"raise"`` when any step of an evaluation fails (attribution, metrics, logging,
            figures, choosing the probe). With ``"warn"`` each method's maps and each
            (method, metric) result fail on their own: the others are still logged, and each
            kind of failure is warned about once.
        batch_transform: Turns a validation batch into ``(images, labels[, boxes])`` or a dict.
        model_attribute: Attribute path of the network inside the LightningModule (default: the
            LightningModule itself, whose forward must return logits).
        autocast: ``"auto"`` (default) attributes under bfloat16 autocast on a CUDA device with
            native bf16 (A100/H100 class) and in float32 elsewhere: bf16 maps were measured as
            faithful as float32's and several times faster on GPUs (see
            :mod:`dave_lightning.precision`). ``None`` attributes in float32 on every device,
            even under mixed precision, and under ``precision="bf16-true"``/``"16-true"`` on a
            float32 copy of the half-precision weights (the trained weights are never written);
            ``"bf16"`` or ``"fp16"`` asks for that autocast everywhere. Under autocast the
            weights are used in their own dtype. Every method uses the same precision.
        display_mean: Per-channel mean to undo for display (default: the timm model's).
        display_std: Per-channel std to undo for display (default: the timm model's).
        dataloader_idx: Which validation loader the probe comes from (checked at the first
            validation, before any attribution).
        patch_size: Patch size for ``"patch_artifact"`` (default: the timm model's).
        figure_dir: Also save each evaluation's figures as PNG files in this folder (rank 0;
            also with ``logger=False``): ``overlays_epoch003.png``, or
            ``overlays_epoch003_step0001500.png`` when the monitor explains more than once per
            epoch.
        recalibrate_noise_every_evaluation: With ``noise_alpha="auto"``, use the level chosen at
            each evaluation instead of keeping the first one (DAVE's curves then mix changes of
            the level with changes of the model).
    """
