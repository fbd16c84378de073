"""The attribution monitor's Lightning hooks and everything they do.

One class serves the callbacks of both Lightning namespaces
(:class:`dave_lightning.callbacks.AttributionMonitor` for ``pytorch_lightning`` and
:class:`dave_lightning.callbacks.lightning.AttributionMonitor` for ``lightning.pytorch``), which
add only their namespace's ``Callback`` base: the trainer and the LightningModule are used through
the attributes both namespaces share, so nothing here imports Lightning.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dave_lightning.callbacks._config import monitor_config, monitor_signature
from dave_lightning.callbacks._evaluation import (
    ATTRIBUTION,
    Evaluation,
    MethodScores,
    Outcome,
    build_attributor,
)
from dave_lightning.callbacks._failures import AbandonedError, FailureGuard, MonitorError
from dave_lightning.callbacks._grids import Grids
from dave_lightning.callbacks._noise_level import NoiseLevel
from dave_lightning.callbacks._precision import float32_network
from dave_lightning.callbacks._probe import Probe, probe_still_in, rank_positions, select_probe
from dave_lightning.callbacks._progress import EvaluationProgress
from dave_lightning.callbacks._publish import (
    custom_scalars_layout,
    epoch_scalars,
    gather_figure_maps,
    log_epoch_figures,
    logging_step,
    send_scalars,
)
from dave_lightning.callbacks._runs import MethodRuns, summary_writers
from dave_lightning.callbacks._schedule import Schedule, schedule_warnings
from dave_lightning.callbacks._setup_checks import (
    check_against_images,
    check_against_model,
    check_network_output,
    display_stats,
    network_patch_size,
    resolve_network,
    short_unsupported_error,
)
from dave_lightning.callbacks._training_state import preserved_training_state
from dave_lightning.callbacks._validation import (
    check_validation_runs,
    load_fit_validation_data,
    validation_batches,
    validation_loader,
)
from dave_lightning.dave import DAVE
from dave_lightning.errors import BadInputError, ConfigurationError, UnsupportedModelError
from dave_lightning.precision import autocast_dtype

__all__ = ["MonitorHooks"]


class MonitorHooks:
    """The monitor's hooks and state; a callback class adds its namespace's ``Callback`` base.

    Its keyword arguments are :class:`~dave_lightning.callbacks._config.MonitorConfig`'s fields
    (documented on :class:`~dave_lightning.callbacks.AttributionMonitor`).
    """

    def __init__(self, *args: Any, **options: Any) -> None:
        config = monitor_config(type(self).__name__, args, options)  # signature: see the end
        self.config = config
        self.probe: Probe | None = None
        self.history: list[dict[str, float]] = []
        self.guard = FailureGuard(config.on_error, config.log_prefix)
        self.last_seconds: dict[str, float] = {}
        self._network: nn.Module | None = None
        self._evaluation: Evaluation | None = None
        self.grids = Grids(config)
        self._warned: set[str] = set()
        self._layout_written = False
        self.runs = MethodRuns()
        self.noise_level = NoiseLevel(
            config.noise_alpha == "auto", config.recalibrate_noise_every_evaluation
        )
        self.schedule = Schedule(config.every_n_epochs, config.every_n_validations)
        self._patch_size: tuple[int, int] | None = None
        self.autocast_dtype: torch.dtype | None = None
        """``autocast`` resolved for the trainer's device at setup (``None``: float32)."""
        self._validation_checked = False
        self._recheck_data = False

    @property
    def num_failures(self) -> int:
        """How many steps have failed so far.

        Whole evaluations, single (method, metric) results, the probe choice, figures, logging.
        """
        return self.guard.count

    @num_failures.setter
    def num_failures(self, count: int) -> None:
        self.guard.count = count

    @property
    def fixed_noise_alpha(self) -> float | None:
        """DAVE's level in use under ``noise_alpha="auto"`` (see :class:`NoiseLevel`)."""
        return self.noise_level.fixed

    @fixed_noise_alpha.setter
    def fixed_noise_alpha(self, level: float | None) -> None:
        self.noise_level.fixed = level

    @property
    def recalibrated_noise_alpha(self) -> float | None:
        """What DAVE's last calibration chose under ``noise_alpha="auto"`` (the drift signal)."""
        return self.noise_level.recalibrated

    @recalibrated_noise_alpha.setter
    def recalibrated_noise_alpha(self, level: float | None) -> None:
        self.noise_level.recalibrated = level

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
            # a new fit counts from the start (a checkpoint, restored after setup, brings its own)
            self.schedule = Schedule(self.config.every_n_epochs, self.config.every_n_validations)
        if stage in ("fit", "validate"):
            self.setup_monitor(pl_module, trainer.strategy.root_device)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Explain the probe set, score the maps, log everything."""
        if self.should_run(trainer):
            self.run(trainer, pl_module)
        elif not trainer.sanity_checking:
            self.guard.log_count(pl_module)  # e.g. the probe could not be chosen

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Close the per-method TensorBoard runs at the end of fit/validate."""
        self.runs.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Close the per-method TensorBoard runs when the run stops on an exception."""
        self.runs.close()

    # --- setup and probe -------------------------------------------------------------------------

    def setup_monitor(self, pl_module: nn.Module, device: torch.device | str = "cpu") -> None:
        """Resolve the network and build every attributor: configuration errors surface here.

        ``device`` is where the trainer will run the network (what ``autocast="auto"`` reads).
        """
        self.autocast_dtype = autocast_dtype(self.config.autocast, device)
        attribute = self.config.model_attribute
        network = resolve_network(pl_module, attribute, self.config.grid_full_resolution)
        self._network = network
        self._recheck_data = True  # a new fit or validate: the validation data may differ
        patch_size = None
        if "patch_artifact" in self.config.metrics:
            patch_size = network_patch_size(network, self.config.patch_size)
        check_against_model(network, self.config.display_mean, self.config.display_std, patch_size)
        attributors = {}
        for method in self.config.methods:
            try:
                attributors[method] = build_attributor(
                    self.config, network, method, self.autocast_dtype
                )
            except UnsupportedModelError as error:
                if attribute is not None:
                    raise
                raise short_unsupported_error(pl_module, method, error) from None
        self._evaluation = Evaluation(self.config, attributors, patch_size)
        self._patch_size = patch_size

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Choose the probe set once (the sanity check's validation, when there is one).

        It is then kept in the callback's state. At the first validation of each ``fit`` or
        ``validate`` the kept probe is looked up in the validation loader (its indices among
        those the loader yields, the same images and labels there): a resumed run keeps its
        probe; a monitor reused on other validation data chooses a new one and warns that
        earlier history rows explain other images.

        Options that contradict the data (``display_mean``/``display_std`` length, a
        ``patch_size`` that does not divide the images) and batches the monitor cannot read are
        errors; any other failure follows ``on_error`` (with ``"warn"``: counted, warned about
        once, retried at the next validation).

        Raises:
            ConfigurationError: When there is no validation loader at ``dataloader_idx``, or the
                options contradict the probe images.
            BadInputError: When a validation batch has a layout the monitor cannot read.
            MonitorError: When choosing failed otherwise and ``on_error="raise"``.
        """
        loader = validation_loader(trainer.val_dataloaders, self.config.dataloader_idx)
        changed = False
        if self.probe is not None:
            if not self._recheck_data or self._probe_still_in(loader):
                self._recheck_data = False
                return
            changed = True
        probe = self._choose_probe(trainer, loader)
        if probe is None:
            return
        self._recheck_data = False
        if changed:
            self._warn_once(
                f"new-probe-{len(self.history)}",
                "AttributionMonitor: the validation data changed since the probe was chosen "
                f"(e.g. a second fit on other data), so a new probe is chosen; the "
                f"{len(self.history)} earlier history rows explain other images.",
            )
        self.probe = probe
        self.grids.forget()

    def _probe_still_in(self, loader: Any) -> bool:
        assert self.probe is not None
        try:
            return probe_still_in(loader, self.probe, self.config.batch_transform)
        except Exception:  # unreadable now: choosing again reports it properly
            return False

    def _choose_probe(self, trainer: Any, loader: Any) -> Probe | None:
        network = self._require_network()
        try:
            with preserved_training_state(network):
                probe = select_probe(
                    loader, self.config.num_images, self.config.seed, self.config.batch_transform
                )
            mean, std = self.display_stats(network)
            check_against_images(probe.images.shape, mean, std, self._patch_size)
            labels = probe.labels if self.config.target == "label" else None
            check_network_output(network, probe.images, labels, self.autocast_dtype is None)
        except (ConfigurationError, BadInputError):
            raise  # options or a batch layout that contradict the data: fix before training
        except Exception as error:
            if self.config.on_error == "raise":
                raise MonitorError(
                    f"AttributionMonitor: choosing the probe failed: {error}"
                ) from error
            self.guard.report_result(
                trainer, "choosing the probe", error, "nothing is explained until it succeeds"
            )
            return None
        return probe

    def _require_network(self) -> nn.Module:
        if self._network is None or self._evaluation is None:
            raise RuntimeError("AttributionMonitor used before `setup`")
        return self._network

    # --- when ----------------------------------------------------------------------------------

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """At the start of ``fit``: the validation loader exists, the schedule can run.

        The validation data is loaded here only when Lightning's sanity check would load it next
        (so it is loaded as that check would, RNG streams restored); otherwise these checks wait
        for the first validation.

        Raises:
            ConfigurationError: When there is no validation loader at ``dataloader_idx``.
        """
        num_batches = None
        self._validation_checked = False
        if load_fit_validation_data(trainer, needs_training_data=self._schedule_is_thinned()):
            validation_loader(trainer.val_dataloaders, self.config.dataloader_idx)
            num_batches = validation_batches(trainer, self.config.dataloader_idx)
            self._validation_checked = True
        for reason in schedule_warnings(trainer, self.schedule, num_batches):
            self._warn_never_runs(reason)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """After the first training epoch (no sanity check): warn when validation is empty.

        Lightning runs no validation hook for a loader without batches, so this is the first
        point where an empty validation set can be seen without loading it early.
        """
        if self._validation_checked or trainer.val_dataloaders is None:
            return
        self._validation_checked = True
        if validation_batches(trainer, self.config.dataloader_idx) == 0:
            self._warn_never_runs(schedule_warnings(trainer, Schedule(), 0)[0])

    @staticmethod
    def _warn_never_runs(reason: str) -> None:
        warnings.warn(
            f"AttributionMonitor will never explain anything in this fit: {reason}.",
            UserWarning,
            stacklevel=3,
        )

    def _schedule_is_thinned(self) -> bool:
        return (
            self.schedule.every_n_epochs is not None
            or self.schedule.every_n_validations is not None
        )

    def should_run(self, trainer: Any) -> bool:
        """Whether to explain this validation.

        In ``fit`` every validation run the schedule picks (never the sanity check); always in
        ``validate``.
        """
        if trainer.sanity_checking:
            return False
        ready = self.probe is not None and self._evaluation is not None
        if getattr(trainer.state.fn, "value", trainer.state.fn) != "fit":
            return ready
        return self.schedule.due(trainer) and ready

    # --- one evaluation ------------------------------------------------------------------------

    def run(self, trainer: Any, pl_module: Any) -> None:
        """Attribute the probe, compute the metrics, log them; never disturbs training.

        Every step is guarded: a failure is counted, logged as ``{log_prefix}/failures`` and
        warned about (``on_error="warn"``), or raised as :class:`MonitorError`.
        """
        network = self._require_network()
        start = time.perf_counter()
        with preserved_training_state(pl_module), torch.inference_mode(False), torch.no_grad():
            outcome = self._evaluate(trainer, network)
            if outcome is not None:
                self._publish(trainer, pl_module, network, outcome, time.perf_counter() - start)
            self.guard.log_count(pl_module)
        if outcome is not None:
            self.last_seconds["total"] = time.perf_counter() - start

    def _evaluate(self, trainer: Any, network: nn.Module) -> Outcome | None:
        """The part every process runs in step (each stage ends in an agreement on failure)."""
        evaluation = self._evaluation
        assert evaluation is not None
        evaluation.seconds = {}
        try:
            kept = self.guard.agreed(trainer, lambda: self._local_pass(trainer, network))
            evaluation.agree_on_failures(self._reduce(trainer))
            results, reference = self.guard.agreed(trainer, self._compute)
            for (method, name), error in evaluation.failures.items():
                self.guard.report_result(trainer, f"{method}/{name}", error)
            maps = self.guard.agreed(trainer, lambda: self._gather_figure_maps(trainer, kept))
            maps = {m: v for m, v in maps.items() if not evaluation.failed(m, ATTRIBUTION)}
        except AbandonedError:
            return None
        finally:
            evaluation.reset()
        return Outcome(results, reference, maps)

    @staticmethod
    def _reduce(trainer: Any) -> Any:
        """Sums a tensor over processes (``None`` with one process)."""
        if trainer.world_size == 1:
            return None
        strategy = trainer.strategy
        return lambda flags: strategy.reduce(flags.to(strategy.root_device), reduce_op="sum")

    def _publish(
        self, trainer: Any, pl_module: Any, network: nn.Module, outcome: Outcome, seconds: float
    ) -> None:
        """Figures (rank 0), then the scalars; each guarded on its own process only."""
        figures_start = time.perf_counter()
        if trainer.is_global_zero:
            self.guard.locally(trainer, lambda: self._write_figures(trainer, network, outcome))
        figures_seconds = time.perf_counter() - figures_start
        self.guard.locally(
            trainer, lambda: self._log_scalars(trainer, pl_module, outcome.results, seconds)
        )
        assert self._evaluation is not None
        self.last_seconds = dict(self._evaluation.seconds) | {"figures": figures_seconds}

    def _local_pass(self, trainer: Any, network: nn.Module) -> dict[str, Tensor]:
        assert self.probe is not None
        assert self._evaluation is not None
        device = next(network.parameters()).device
        self._evaluation.to(device)
        calibrates = self._auto_dave() is not None
        progress = EvaluationProgress.for_trainer(
            trainer, self._evaluation.progress_steps(True) + int(calibrates)
        )
        self._evaluation.progress = progress.advance
        try:
            with float32_network(network, self.autocast_dtype is None):
                dtype = next(network.parameters()).dtype
                images = self.probe.images.to(device=device, dtype=dtype)
                targets = self._targets(network, images)
                self._calibrate(images, targets)
                if calibrates:
                    progress.advance("DAVE noise calibration")
                positions = rank_positions(trainer, len(self.probe))
                share = self.probe.select(positions)
                share.images = images[positions.to(device)]
                grids = self.grids.share(trainer, self.probe, network, device, dtype)
                total = self._evaluation.progress_steps(grids is not None) + int(calibrates)
                progress.shrink(self._evaluation.progress_steps(True) + int(calibrates) - total)
                keep = positions < self.config.log_images
                self._warn_missing_regions()
                return self._evaluation.update(
                    network, share, targets[positions.to(device)], grids, keep
                )
        finally:
            progress.close()

    def _compute(self) -> tuple[dict[str, MethodScores], Tensor | None]:
        """Synchronise and compute every metric (a collective), plus DAVE's calibration.

        With ``noise_alpha="auto"`` DAVE's scores also hold :meth:`NoiseLevel.scalars`.
        """
        assert self._evaluation is not None
        has_grids = self.grids.grid_set is not None
        results, reference = self._evaluation.compute(self._has_regions(), has_grids)
        dave = self._auto_dave()
        noise_scalars = {} if dave is None else self.noise_level.scalars(dave)
        if noise_scalars:
            results.setdefault("dave", MethodScores()).scalars.update(noise_scalars)
        return results, reference

    def _targets(self, network: nn.Module, images: Tensor) -> Tensor:
        """Every probe image's class to explain (the caller restores module modes)."""
        assert self.probe is not None
        if self.config.target == "label":
            return self.probe.labels.to(images.device)
        network.eval()
        return network(images).argmax(dim=1)

    def _auto_dave(self) -> DAVE | None:
        """The DAVE attributor whose level :attr:`noise_level` sets (else ``None``)."""
        if self._evaluation is None:
            return None
        return self.noise_level.dave(self._evaluation.attributors)

    def _calibrate(self, images: Tensor, targets: Tensor) -> None:
        """With ``noise_alpha="auto"``: set DAVE's level (see :meth:`NoiseLevel.calibrate`)."""
        dave = self._auto_dave()
        if dave is not None and self.probe is not None:
            self.noise_level.calibrate(dave, images, targets, self.probe.indices)

    def _has_regions(self) -> bool:
        return self.probe is not None and (
            self.probe.boxes is not None or self.probe.masks is not None
        )

    def _warn_missing_regions(self) -> None:
        if "energy_pg" in self.config.metrics and not self._has_regions():
            self._warn_once(
                "regions",
                "AttributionMonitor: EnergyPG is skipped because the validation batches carry no "
                "object boxes or masks; return (images, labels, boxes) or a dict with 'boxes' or "
                "'mask' (or convert with `batch_transform`) to enable it.",
            )

    # --- warnings and figure maps ---------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=2)

    def _gather_figure_maps(self, trainer: Any, kept: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The maps of the first ``log_images`` probe images, on every process (a collective)."""
        assert self.probe is not None
        return gather_figure_maps(trainer, self.config, self.probe, kept)

    # --- logging -------------------------------------------------------------------------------

    def _log_scalars(
        self, trainer: Any, pl_module: Any, results: Mapping[str, MethodScores], seconds: float
    ) -> None:
        prefix = self.config.log_prefix
        scalars = epoch_scalars(prefix, results, seconds)
        for method, scores in results.items():
            if scores.num_nan:
                self._warn_once(
                    f"nan-{method}",
                    f"AttributionMonitor: {method} produced "
                    f"{scores.num_nan} non-finite maps; they are excluded and counted.",
                )
        # Through Lightning's own logging: every logger gets them at the step of the epoch's
        # validation metrics (the figures use that step too), checkpoint/early-stopping monitors
        # see them, and `trainer.validate` returns them. The failure count is logged by `run`.
        pl_module.log_dict(scalars, on_step=False, on_epoch=True, batch_size=1)
        if trainer.is_global_zero:  # and per method one TensorBoard run, one tag per metric
            send_scalars(trainer, self.runs, prefix, scalars)
        fitting = getattr(trainer.state.fn, "value", trainer.state.fn) == "fit"
        row = {
            "epoch": float(trainer.current_epoch),
            "step": float(logging_step(trainer)),
            "fit": float(fitting),  # 0.0: a `trainer.validate` run (e.g. before training)
        }
        if self.num_failures:
            row[f"{prefix}/failures"] = float(self.num_failures)
        self.history.append(row | scalars)

    def _write_figures(self, trainer: Any, network: nn.Module, outcome: Outcome) -> None:
        """Rank 0: the custom-scalars layout once, then this evaluation's figures."""
        self._write_layout(trainer)
        if not outcome.figure_maps:
            return
        assert self.probe is not None
        curve = self.calibration_curve()
        sensitivity = None if curve is None else (curve, self.fixed_noise_alpha)
        with float32_network(network, self.autocast_dtype is None):
            log_epoch_figures(
                trainer,
                self.config,
                self.probe,
                network,
                outcome,
                self.display_stats(network),
                sensitivity,
            )

    def _write_layout(self, trainer: Any) -> None:
        if self._layout_written:
            return
        layout = custom_scalars_layout(
            self.config.log_prefix,
            self.config.metrics,
            self.config.deletion_order,
            noise_sensitivity=self._auto_dave() is not None,
        )
        for writer in summary_writers(trainer.loggers):
            writer.add_custom_scalars(layout)
        self._layout_written = True

    def calibration_curve(self) -> Any:
        """DAVE's last sensitivity curve under ``noise_alpha="auto"`` (else ``None``)."""
        dave = self._auto_dave()
        return None if dave is None else dave.calibration

    def display_stats(self, network: nn.Module) -> tuple[Any, Any]:
        """Mean and std that map probe images back to display space (or ``(None, None)``)."""
        return display_stats(network, self.config.display_mean, self.config.display_std)

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The probe set (a resumed run explains the same images), history, failures, level.

        Also the schedule's counts; :meth:`load_state_dict` restores them.
        """
        return {
            "probe": None if self.probe is None else self.probe.state(),
            "history": list(self.history),
            "num_failures": self.num_failures,
            **self.noise_level.state(),
            "schedule": self.schedule.state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (a resumed run keeps its probe set)."""
        probe = state.get("probe")
        self.probe = None if probe is None else Probe.from_state(probe)
        self.history = list(state.get("history", []))
        self.num_failures = int(state.get("num_failures", 0))
        self.noise_level.load(state)
        self.schedule.load(state.get("schedule", {}))
        self.grids.forget()


MonitorHooks.__init__.__signature__ = monitor_signature()  # type: ignore[attr-defined]
