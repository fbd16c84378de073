"""AttributionMonitor: track explanation quality over epochs in TensorBoard.

Attach it to a ``pytorch_lightning.Trainer``; at the end of validation runs it explains a
fixed probe set of validation images with DAVE (and any baselines), scores the maps with GridPG,
EnergyPG and pixel deletion, and logs the scores, a custom-scalars layout, overlays and deletion
curves. Training is bit-for-bit unchanged by it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from dave_lightning.callbacks._config import MonitorConfig, monitor_signature
from dave_lightning.callbacks._monitor import MonitorError, MonitorLogic
from dave_lightning.callbacks._validation import check_validation_runs

__all__ = ["AttributionMonitor", "MonitorError"]


class _MonitorHooks(MonitorLogic):
    """The Lightning hooks, shared by the ``pytorch_lightning`` and ``lightning`` callbacks.

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
        autocast: ``None`` attributes in float32 even under mixed precision, and under
            ``precision="bf16-true"``/``"16-true"`` on a float32 copy of the half-precision
            weights (the trained weights are never written); ``"bf16"`` or ``"fp16"`` opts in
            to autocast (then the weights are used in their own dtype).
        display_mean: Per-channel mean to undo for display (default: the timm model's).
        display_std: Per-channel std to undo for display (default: the timm model's).
        dataloader_idx: Which validation loader the probe comes from (checked at the first
            validation, before any attribution).
        patch_size: Patch size for ``"patch_artifact"`` (default: the timm model's).
        figure_dir: Also save each epoch's figures as PNG files in this folder (rank 0; also
            with ``logger=False``).
        recalibrate_noise_every_evaluation: With ``noise_alpha="auto"``, use the level chosen at
            each evaluation instead of keeping the first one (DAVE's curves then mix changes of
            the level with changes of the model).
    """

    def __init__(self, *args: Any, **options: Any) -> None:
        # The keywords and defaults are MonitorConfig's fields (see `monitor_signature` below).
        super().__init__(MonitorConfig(*args, **options))

    @property
    def state_key(self) -> str:
        """Unique per log prefix, so several monitors can share a trainer."""
        return f"{type(self).__qualname__}{{'log_prefix': {self.config.log_prefix!r}}}"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Resolve the network and build the attributors: bad configurations fail here.

        In ``fit`` it also fails when Lightning will run no validation (no loader, no
        ``validation_step`` or ``limit_val_batches=0``): the monitor would never run.
        """
        if stage == "fit":
            check_validation_runs(trainer, pl_module)
            self.restart_schedule()  # a checkpoint, restored after setup, brings its own
        if stage in ("fit", "validate"):
            self.setup_monitor(pl_module)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Check the validation loader and warn about a schedule that can never run."""
        self.check_fit_start(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Without a sanity check: warn after the first epoch when validation was empty."""
        self.check_validation_loaded(trainer)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Choose the probe set on the first validation (the sanity check when there is one)."""
        self.ensure_probe(trainer)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Explain the probe set, score the maps, log everything."""
        if self.should_run(trainer):
            self.run(trainer, pl_module)
        elif not trainer.sanity_checking:
            self.guard.log_count(pl_module)  # e.g. the probe could not be chosen

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Close the per-method TensorBoard runs at the end of fit/validate."""
        self.close_runs()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Close the per-method TensorBoard runs when the run stops on an exception."""
        self.close_runs()

    def state_dict(self) -> dict[str, Any]:
        """The probe set (so a resumed run explains the same images), history, failures."""
        return self.monitor_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.load_monitor_state(state_dict)


class AttributionMonitor(_MonitorHooks, pl.Callback):
    """Track explanation quality over epochs; see :class:`_MonitorHooks` for the options."""

    __doc__ = _MonitorHooks.__doc__


_MonitorHooks.__init__.__signature__ = monitor_signature()  # type: ignore[attr-defined]
