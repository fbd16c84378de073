"""One-go check of dave_lightning on a GPU (issue 15, item 8); a few minutes on one GPU.

Checks, each reported PASS / FAIL / SKIP with its figures:

1. ``fit``: ``Trainer(deterministic=True, precision="bf16-mixed")`` fits a tiny timm ViT on the
   embedded SyntheticShapes data with ``AttributionMonitor(methods=["dave", "gradient"])``; every
   ``explain/{method}/{metric}`` scalar reaches ``trainer.callback_metrics`` and TensorBoard, one
   evaluation per epoch, ``explain/failures`` is absent or 0, and the monitor's default
   ``autocast="auto"`` attributed in bf16 on a GPU with native bf16 (float32 elsewhere).
2. ``bitwise``: DAVE twice on the trained model under ``torch.use_deterministic_algorithms(True)``
   gives bitwise equal maps, in bf16 autocast and in float32 (without the flag: printed, not
   judged).
3. ``checkpointing``: DAVE and effective input×gradient with ``set_grad_checkpointing(True)``
   equal the maps without it.
4. ``bf16``: DAVE under bf16 autocast against float32 DAVE: the correlation with float32 maps of
   the same seed must be at least float32's own seed-to-seed correlation (bf16's error is then
   below DAVE's Monte-Carlo noise); the correlation with another seed's float32 maps is printed
   next to float32's seed-to-seed correlation.
5. ``compile``: ``DAVE(compile=True)`` against eager DAVE, in float32 (to 1e-4 of the map's
   largest value) and under bf16 autocast (within half of bf16's own distance from float32).
6. ``pytest -m cuda``: the test suite's CUDA-marked tests; with a GPU also
   ``tests/callbacks/test_monitor_fit.py`` (its Trainers pick the GPU by themselves).

Without a GPU (or with ``--device cpu``) checks 1-5 run on the CPU with tiny settings, so the
script can be checked end to end anywhere; the GPU-only parts say SKIP and why. Exit status 1
when any check fails.

Run:
    python benchmarks/check_cuda.py                 # the GPU if there is one, else the CPU
    python benchmarks/check_cuda.py --device cpu    # force the CPU (tiny settings)
"""

from __future__ import annotations

import os

# cuBLAS refuses to run under the deterministic flag without it (Lightning sets it the same way)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import timm
import torch
from bf16_fidelity import correlation
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn
from torch.utils.data import DataLoader

from dave_lightning import DAVE, get_attributor
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.data import SyntheticShapes
from dave_lightning.demo.classifier import ImageClassifier
from dave_lightning.precision import autocast_dtype

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dave", "gradient")
METRICS = ("grid_pg", "energy_pg", "deletion_auc")


@dataclass(frozen=True)
class Settings:
    """Sizes of one run: the GPU's (a few minutes) or the CPU's (tiny)."""

    image_size: int
    depth: int
    train_images: int
    val_images: int
    epochs: int
    probe_images: int
    num_samples: int
    check_images: int


GPU = Settings(
    image_size=64,
    depth=4,
    train_images=1024,
    val_images=128,
    epochs=3,
    probe_images=16,
    num_samples=16,
    check_images=16,
)
CPU = Settings(
    image_size=32,
    depth=2,
    train_images=96,
    val_images=32,
    epochs=2,
    probe_images=12,
    num_samples=4,
    check_images=4,
)


@dataclass
class Result:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled)`` for a block, then the previous setting."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _loaders(settings: Settings) -> tuple[DataLoader, DataLoader]:
    size = settings.image_size
    train = SyntheticShapes("train", length=settings.train_images, image_size=size)
    val = SyntheticShapes("val", length=settings.val_images, image_size=size)
    generator = torch.Generator().manual_seed(0)
    return (
        DataLoader(train, batch_size=32, shuffle=True, generator=generator),
        DataLoader(val, batch_size=32),
    )


def _logged_tags(run: Path) -> set[str]:
    """The scalar tags of one TensorBoard run (its own event files, not its sub-runs)."""
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def check_fit(settings: Settings, device: torch.device, work: Path) -> tuple[str, nn.Module]:
    pl.seed_everything(0, verbose=False)
    train, val = _loaders(settings)
    module = ImageClassifier(
        "vit_tiny_patch16_224",
        num_classes=6,
        model_kwargs={"img_size": settings.image_size, "patch_size": 8, "depth": settings.depth},
        lr=2e-3,
    )
    monitor = AttributionMonitor(
        methods=list(METHODS),
        num_images=settings.probe_images,
        num_samples=settings.num_samples,
        log_images=2,
        deletion_steps=8,
        max_grids=2,
        on_error="warn",
    )
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed",
        deterministic=True,
        callbacks=[monitor],
        max_epochs=settings.epochs,
        default_root_dir=str(work),
        logger=TensorBoardLogger(str(work), name="check"),
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train, val)
    expected = {f"explain/{method}/{metric}" for method in METHODS for metric in METRICS}
    run = Path(trainer.logger.log_dir)  # the logger's run; each method also has its own beside it
    logged = _logged_tags(run)
    missing_method_runs = sorted(
        f"{method}: explain/{metric}"
        for method in METHODS
        for metric in METRICS
        if f"explain/{metric}" not in _logged_tags(run / method)
    )
    missing_metrics = sorted(expected - set(trainer.callback_metrics))
    missing_tensorboard = sorted(expected - logged)
    failures = float(trainer.callback_metrics.get("explain/failures", torch.tensor(0.0)))
    problems = []
    if missing_metrics:
        problems.append(f"not in callback_metrics: {missing_metrics}")
    if missing_tensorboard:
        problems.append(f"not in TensorBoard: {missing_tensorboard}")
    if missing_method_runs:
        problems.append(f"not in the per-method TensorBoard runs: {missing_method_runs}")
    if failures or "explain/failures" in logged:
        problems.append(f"explain/failures = {failures:g}")
    if len(monitor.history) != settings.epochs:
        problems.append(f"{len(monitor.history)} evaluations in {settings.epochs} epochs")
    if monitor.autocast_dtype != autocast_dtype("auto", device):
        problems.append(f"the default autocast resolved to {monitor.autocast_dtype} on {device}")
    if problems:
        said = sorted({str(w.message).splitlines()[0] for w in caught})
        raise AssertionError("; ".join(problems) + "\nwarnings during fit:\n" + "\n".join(said))
    dave_grid = float(trainer.callback_metrics["explain/dave/grid_pg"])
    accuracy = float(trainer.callback_metrics.get("val_acc", torch.tensor(float("nan"))))
    detail = (
        f"{settings.epochs} epochs, {len(monitor.history)} evaluations, "
        f"{len(expected)} scalars logged, no failures; val_acc {accuracy:.2f}, "
        f"dave grid_pg {dave_grid:.2f}; attributed in {monitor.autocast_dtype or torch.float32}"
    )
    network: nn.Module = module.model
    return detail, network.float().to(device).eval()


def _probe(settings: Settings, device: torch.device, model: nn.Module) -> tuple[Tensor, Tensor]:
    data = SyntheticShapes("test", length=settings.check_images, image_size=settings.image_size)
    images = torch.stack([data[i][0] for i in range(len(data))]).to(device)
    with torch.no_grad():
        predictions = model(images).argmax(dim=1)
    return images, predictions


def check_bitwise(settings: Settings, model: nn.Module, images: Tensor, targets: Tensor) -> str:
    for dtype in (torch.bfloat16, None):  # the GPU default, then float32
        dave = DAVE(model, num_samples=settings.num_samples, seed=0, autocast_dtype=dtype)
        with deterministic(True):
            first, second = dave.attribute(images, targets), dave.attribute(images, targets)
        if not torch.equal(first, second):
            difference = float((first - second).abs().max())
            raise AssertionError(
                f"{dtype or 'float32'}: two calls under the flag differ by up to {difference:.1e}"
            )
    with deterministic(False):
        third, fourth = dave.attribute(images, targets), dave.attribute(images, targets)
    unflagged = (
        "bitwise equal"
        if torch.equal(third, fourth)
        else f"differ by {float((third - fourth).abs().max()):.1e}"
    )
    return f"under the flag: bitwise equal (bf16, float32); without it (not judged): {unflagged}"


def check_checkpointing(
    settings: Settings, model: nn.Module, images: Tensor, targets: Tensor
) -> str:
    details = []
    for name, options in (
        ("dave", {"num_samples": settings.num_samples}),
        ("effective_input_x_gradient", {}),
    ):
        attributor = get_attributor(name, model, **options)
        model.set_grad_checkpointing(False)
        without = attributor.attribute(images, targets)
        model.set_grad_checkpointing(True)
        try:
            with_checkpointing = attributor.attribute(images, targets)
        finally:
            model.set_grad_checkpointing(False)
        difference = float((with_checkpointing - without).abs().max())
        scale = float(without.abs().max())
        if difference > 1e-5 * scale:
            raise AssertionError(f"{name}: maps differ by {difference:.1e} (max |map| {scale:.1e})")
        details.append(f"{name} max difference {difference:.1e}")
    return "; ".join(details)


def check_bf16(settings: Settings, model: nn.Module, images: Tensor, targets: Tensor) -> str:
    samples = settings.num_samples

    def dave(seed: int, dtype: torch.dtype | None) -> Tensor:
        return DAVE(model, num_samples=samples, seed=seed, autocast_dtype=dtype).attribute(
            images, targets
        )

    float32, float32_other, bf16 = dave(0, None), dave(1, None), dave(0, torch.bfloat16)
    same_seed = correlation(bf16, float32)
    other_seed = correlation(bf16, float32_other)
    seed_to_seed = correlation(float32, float32_other)
    detail = (
        f"N={samples}: corr(bf16, fp32 same seed) {same_seed:.3f}; corr(bf16, fp32 other seed) "
        f"{other_seed:.3f} vs fp32 seed-to-seed {seed_to_seed:.3f}"
    )
    if same_seed < seed_to_seed:
        raise AssertionError(detail + " (bf16 further from fp32 than another fp32 seed)")
    return detail


def check_compiled(settings: Settings, model: nn.Module, images: Tensor, targets: Tensor) -> str:
    """``DAVE(compile=True)`` against eager (mean aggregation: continuous in the gradients).

    float32: equal to 1e-4 of the map's largest value; bf16 autocast (the monitor's default on a
    GPU): within half of bf16's own distance from float32.
    """
    options = {"num_samples": settings.num_samples, "seed": 0, "aggregation": "mean"}
    details, problems = [], []
    float32 = DAVE(model, **options).attribute(images, targets)
    for dtype in (None, torch.bfloat16):
        eager = DAVE(model, autocast_dtype=dtype, **options).attribute(images, targets)
        compiled = DAVE(model, compile=True, autocast_dtype=dtype, **options)
        start = time.perf_counter()
        first = compiled.attribute(images, targets)
        seconds = time.perf_counter() - start
        difference = float((first - eager).abs().max())
        scale = float(eager.abs().max())
        limit = 1e-4 * scale if dtype is None else 0.5 * float((eager - float32).abs().max())
        details.append(
            f"{dtype or torch.float32}: max difference {difference:.1e} (limit {limit:.1e}, "
            f"max |map| {scale:.1e}); first call {seconds:.0f} s"
        )
        if difference > limit:
            problems.append(details[-1])
    if problems:
        raise AssertionError("; ".join(problems))
    return "; ".join(details)


def _pytest(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def check_cuda_tests(device: torch.device) -> Result:
    run = _pytest(["-m", "cuda", "-rs", "tests"], timeout=600)
    summary = _last_line(run.stdout)
    if device.type != "cuda":
        if run.returncode == 0 and " passed" not in summary:
            return Result("pytest -m cuda", "SKIP", f"no GPU here: {summary}")
        return Result("pytest -m cuda", "FAIL", f"rc {run.returncode}: {summary}")
    status = "PASS" if run.returncode == 0 and "skipped" not in summary else "FAIL"
    return Result("pytest -m cuda", status, summary if status == "PASS" else run.stdout[-2000:])


def check_monitor_fit_tests(device: torch.device) -> Result:
    name = "monitor-fit tests on the GPU"
    if device.type != "cuda":
        return Result(name, "SKIP", "no GPU here (they run on the CPU in the ordinary suite)")
    run = _pytest(["tests/callbacks/test_monitor_fit.py"], timeout=600)
    status = "PASS" if run.returncode == 0 else "FAIL"
    summary = _last_line(run.stdout)
    return Result(name, status, summary if status == "PASS" else run.stdout[-2000:])


def _run(name: str, check: Callable[[], str]) -> Result:
    start = time.perf_counter()
    try:
        detail = check()
        status = "PASS"
    except Exception as error:  # a check that raises is a failure, reported, not a crash
        traceback.print_exc()
        detail, status = f"{type(error).__name__}: {error}", "FAIL"
    result = Result(name, status, f"{detail} [{time.perf_counter() - start:.0f} s]")
    print(f"{result.status:>4}  {result.name}: {result.detail}", flush=True)
    return result


def _device(choice: str) -> tuple[torch.device, str]:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        why = "forced by --device cpu" if choice == "cpu" else "no GPU found"
        return torch.device("cpu"), f"CPU ({why}; tiny settings, GPU-only parts skipped)"
    return torch.device("cuda"), torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--no-pytest", action="store_true", help="skip the pytest checks")
    args = parser.parse_args(argv)
    device, description = _device(args.device)
    settings = GPU if device.type == "cuda" else CPU
    print(
        f"dave_lightning GPU check on {description}\n"
        f"torch {torch.__version__}, timm {timm.__version__}, lightning {pl.__version__}\n"
        f"{settings}",
        flush=True,
    )
    start = time.perf_counter()
    results: list[Result] = []
    trained: dict[str, Any] = {}

    def fit() -> str:
        with tempfile.TemporaryDirectory() as work:
            detail, trained["model"] = check_fit(settings, device, Path(work))
        return detail

    results.append(_run("fit (deterministic, bf16-mixed, monitor)", fit))
    if "model" not in trained:  # the later checks need the trained model
        pl.seed_everything(0, verbose=False)
        trained["model"] = (
            ImageClassifier(
                "vit_tiny_patch16_224",
                model_kwargs={"img_size": settings.image_size, "patch_size": 8, "depth": 2},
            )
            .model.to(device)
            .eval()
        )
    model = trained["model"]
    images, targets = _probe(settings, device, model)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("DAVE twice, bitwise", lambda: check_bitwise(settings, model, images, targets)),
        ("gradient checkpointing", lambda: check_checkpointing(settings, model, images, targets)),
        ("bf16 autocast vs float32", lambda: check_bf16(settings, model, images, targets)),
        ("DAVE(compile=True) vs eager", lambda: check_compiled(settings, model, images, targets)),
    ]
    results.extend(_run(name, check) for name, check in checks)
    if args.no_pytest:
        results.append(Result("pytest", "SKIP", "--no-pytest"))
    else:
        for pytest_check in (check_cuda_tests, check_monitor_fit_tests):
            result = pytest_check(device)
            print(f"{result.status:>4}  {result.name}: {result.detail}", flush=True)
            results.append(result)
    failed = [result.name for result in results if result.status == "FAIL"]
    print(f"\nSUMMARY ({time.perf_counter() - start:.0f} s on {description})")
    for result in results:
        print(f"  {result.status:>4}  {result.name}")
    print("FAIL: " + ", ".join(failed) if failed else "PASS: every check that could run passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
