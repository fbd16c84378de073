"""DAVE speed and memory, printed as ratios against the relevant alternatives (issue 2).

(a) DAVE time / time of N plain input-gradient passes of the same images batched the same way
    (the cost of SmoothGrad-N). Goal <= 1.0.
(b) speed-up of DAVE over a straightforward one-sample-at-a-time loop whose effective gradient is
    made by detaching an explicit, unfused softmax, the LayerNorm scale and the GELU gate.
    Goal >= 1.5x on CPU, >= 3x on a GPU.
(c) peak memory of both aggregations as N grows (each configuration in a fresh subprocess:
    peak RSS on CPU, peak allocated on CUDA).

(d) ``--stages``: the cost of each DAVE stage in ms per image with ratios to N plain
    input-gradient passes and the peak memory of each configuration (issue 16's table).
(e) ``--sweep``: DAVE's seconds per image-sample by ``max_batch_size`` (1, 4, ..., 64, auto).
(f) ``--compile``: DAVE (default options) with ``compile=True`` against eager DAVE and the plain
    passes, as medians (and bests) of interleaved repeats, after one untimed call each (the
    compiled one's is the compilation, printed), and the largest difference of the maps.

Run:
    python benchmarks/bench_dave.py            # the issue's setting: ViT-Ti/16, ViT-S/16 at 224
    python benchmarks/bench_dave.py --quick    # a few minutes on 2 CPU cores
    python benchmarks/bench_dave.py --stages --device cuda --dtype bf16 \
        --models vit_base_patch16_224 --batch-sizes 16 --num-samples 50 --max-batch-size 256
    python benchmarks/bench_dave.py --stages --models vit_tiny_patch16_224 vit_small_patch16_224 \
        --batch-sizes 1 8 --num-samples 16     # the CPU table of the stages
    python benchmarks/bench_dave.py --sweep --models vit_small_patch16_224 --batch-sizes 4 \
        --num-samples 16
    python benchmarks/bench_dave.py --compile --models vit_tiny_patch16_224 --batch-sizes 8 \
        --num-samples 16 --repeats 5
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import timm
import torch
from _dave_stages import Setting, stage_table
from _naive_effective import NaiveEffective
from _timing import seconds
from torch import Tensor, nn

from dave_lightning import DAVE, robust_mean
from dave_lightning.transforms import (
    LocalTransformDistribution,
    noise_levels,
    slot_noise,
    slot_seed,
    warp,
)


def _best_time(
    fn: Callable[[], object], repeats: int, device: torch.device, warm_up: bool = True
) -> float:
    if warm_up:
        fn()
    return min(seconds(fn, device) for _ in range(repeats))


def _paired_best_times(
    first: Callable[[], object], second: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Best time of each, measured alternately so that machine noise hits both alike."""
    first(), second()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            bucket.append(_best_time(fn, 1, device, warm_up=False))
    return min(times[0]), min(times[1])


def _plain_gradient_passes(
    model: nn.Module, images: Tensor, target: Tensor, n: int, batch: int
) -> None:
    """N noisy input-gradient passes per image, stacked like DAVE stacks its samples."""
    slots = torch.arange(images.shape[0] * n, device=images.device)
    generator = torch.Generator(device=images.device).manual_seed(0)
    for chunk in slots.split(batch):
        index = chunk // n
        x = images[index].clone().requires_grad_(True)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        logits = model(x + 0.1 * noise)
        torch.autograd.grad(logits.gather(1, target[index, None]).sum(), x)


# --- the naive first implementation --------------------------------------------------------------


def _naive_dave(model: nn.Module, images: Tensor, target: Tensor, n: int, alpha: float) -> Tensor:
    distribution = LocalTransformDistribution()
    levels = noise_levels(n, alpha)
    out = []
    with NaiveEffective(model):
        for b in range(images.shape[0]):
            maps = []
            for k in range(n):
                seeds = [slot_seed(0, b, k)]
                x = images[b : b + 1].clone().requires_grad_(True)
                t = float(levels[k])
                noise = slot_noise(seeds, images.shape[1:], images.device, images.dtype)
                z = (1 - t) * warp(x, distribution.sample(seeds)) + math.sqrt(
                    1 - (1 - t) ** 2
                ) * noise
                (grad,) = torch.autograd.grad(model(z)[0, target[b]], x)
                maps.append(grad * x.detach())
            out.append(robust_mean(torch.cat(maps), dim=0).sum(0))
    return torch.stack(out)


# --- memory probe (runs in a subprocess) ---------------------------------------------------------


def _memory_probe(spec: dict[str, object]) -> dict[str, float]:
    device = torch.device(str(spec["device"]))
    model = timm.create_model(str(spec["model"]), pretrained=False).to(device).eval()
    images = torch.randn(int(spec["batch"]), 3, 224, 224, device=device)  # type: ignore[call-overload]
    target = torch.zeros(images.shape[0], dtype=torch.long, device=device)
    dave = DAVE(
        model,
        num_samples=int(spec["n"]),
        aggregation=spec["aggregation"],
        max_batch_size=int(spec["max_batch"]),
    )  # type: ignore[arg-type, call-overload]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        dave.attribute(images, target)
        return {"peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20}
    # ru_maxrss is useless here: a forked child inherits its parent's high-water mark. Reset
    # this process's own mark (Linux >= 4.0) and read it back from /proc.
    Path("/proc/self/clear_refs").write_text("5")
    base = _proc_status_mb("VmRSS")
    dave.attribute(images, target)
    return {"peak_mb": _proc_status_mb("VmHWM") - base}


def _proc_status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure_memory(spec: dict[str, object]) -> float:
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"])


# --- the report ----------------------------------------------------------------------------------


def _speed_row(args: argparse.Namespace, device: torch.device, name: str, batch: int) -> str:
    model = timm.create_model(name, pretrained=False).to(device).eval()
    generator = torch.Generator(device).manual_seed(0)
    images = torch.randn(batch, 3, 224, 224, device=device, generator=generator)
    target = torch.arange(batch, device=device) % 1000
    n = args.num_samples
    dave = DAVE(model, num_samples=n, max_batch_size=args.max_batch)
    chunk = dave.batch_size_for(images)  # the plain passes are stacked the same way
    run_dave = functools.partial(dave.attribute, images, target)
    plain = functools.partial(_plain_gradient_passes, model, images, target, n, chunk)
    t_dave, t_plain = _paired_best_times(run_dave, plain, args.repeats, device)
    t_naive = math.nan
    if not args.skip_naive:
        naive = functools.partial(_naive_dave, model, images, target, n, dave.noise_alpha)
        _naive_dave(model, images[:1], target[:1], 2, dave.noise_alpha)  # a cheap warm-up
        t_naive = _best_time(naive, 1, device, warm_up=False)  # one long run: best-of is costly
    goal = 3.0 if device.type == "cuda" else 1.5
    return (
        f"| {name} | {batch} | {n} | {t_dave:.2f} | {t_plain:.2f} | "
        f"**{t_dave / t_plain:.2f}** (<= 1.0) | {t_naive:.2f} | **{t_naive / t_dave:.2f}x** "
        f"(>= {goal}x) |"
    )


MEMORY_CHUNK = 16
"""Inputs per pass in the memory runs: small, so the activations do not hide the buffers."""


def _memory_rows(args: argparse.Namespace, device: torch.device) -> Iterator[str]:
    for n in args.memory_samples:
        cells = []
        for aggregation in ("robust", "mean"):
            spec = {
                "device": str(device),
                "model": args.models[0],
                "batch": args.memory_batch,
                "n": n,
                "aggregation": aggregation,
                "max_batch": MEMORY_CHUNK,
            }
            cells.append(f"{_measure_memory(spec):.0f}")
        buffer_mb = args.memory_batch * n * 3 * 224 * 224 * 4 / 2**20
        yield f"| {n} | {cells[0]} | {cells[1]} | {buffer_mb:.0f} |"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return f"{torch.get_num_threads()} threads"


SWEEP = (1, 4, 8, 16, 32, 64, "auto")


def _batch_option(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    parser.add_argument("--quick", action="store_true", help="ViT-Ti only, N = 10, fewer repeats")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--models", nargs="+", default=None, help="timm model names")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="images B")
    parser.add_argument("--num-samples", type=int, default=None, help="N")
    parser.add_argument("--max-batch-size", type=_batch_option, default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="print (d), the stage table")
    parser.add_argument("--sweep", action="store_true", help="print (e), the batch-size sweep")
    parser.add_argument("--compile", action="store_true", help="print (f), compiled vs eager")
    parser.add_argument("--no-loops", action="store_true", help="(d) without the loops")
    parser.add_argument(
        "--sweep-sizes", nargs="+", type=_batch_option, default=list(SWEEP), help="for (e)"
    )
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.models is None:
        args.models = ["vit_tiny_patch16_224"]
        if not args.quick:
            args.models.append("vit_small_patch16_224")
    if args.num_samples is None:
        args.num_samples = 10 if args.quick else 50
    args.max_batch = args.max_batch_size
    args.memory_samples = [10, 25, 50] if args.quick else [10, 25, 50, 100]
    args.memory_batch = 2 if args.quick else 8
    args.autocast = torch.bfloat16 if args.dtype == "bf16" else None
    return args


def _setting(args: argparse.Namespace, device: torch.device, name: str, batch: int) -> Setting:
    model = timm.create_model(name, pretrained=False).to(device).eval()
    generator = torch.Generator(device).manual_seed(0)
    images = torch.randn(batch, 3, 224, 224, device=device, generator=generator)
    target = torch.arange(batch, device=device) % 1000
    return Setting(model, images, target, args.num_samples, args.max_batch, args.autocast)


def _print_stages(args: argparse.Namespace, device: torch.device) -> None:
    print(
        f"\n(d) ms per image of each stage, ratio to N plain passes, peak memory "
        f"({args.dtype}, N = {args.num_samples}, max_batch_size = {args.max_batch})"
    )
    for name in args.models:
        for batch in args.batch_sizes:
            setting = _setting(args, device, name, batch)
            rows = stage_table(setting, args.repeats, with_loops=not args.no_loops)
            plain = rows[0][1]
            print(f"\n{name}, B = {batch}, {setting.passes()} inputs per pass\n")
            print("| what | ms / image | × plain | peak MB |")
            print("|---|---|---|---|")
            for row, taken, peak in rows:
                print(
                    f"| {row} | {1e3 * taken / batch:.1f} | {taken / plain:.2f} | {peak:.0f} |",
                    flush=True,
                )


def _print_sweep(args: argparse.Namespace, device: torch.device) -> None:
    """DAVE (default options) by max_batch_size, interleaved rounds, best round per size."""
    for name in args.models:
        for batch in args.batch_sizes:
            setting = _setting(args, device, name, batch)
            sizes = args.sweep_sizes
            runs = {}
            for size in sizes:
                dave = DAVE(
                    setting.model,
                    num_samples=args.num_samples,
                    max_batch_size=size,  # type: ignore[arg-type]
                    autocast_dtype=args.autocast,
                )
                runs[size] = functools.partial(dave.attribute, setting.images, setting.target)
            best = dict.fromkeys(sizes, math.inf)
            for _ in range(args.repeats):
                for size in sizes:
                    best[size] = min(best[size], _best_time(runs[size], 1, device, warm_up=False))
            auto = DAVE(setting.model).batch_size_for(setting.images)
            slots = batch * args.num_samples
            print(f"\n(e) {name}, B = {batch}, N = {args.num_samples}: s per image-sample\n")
            print("| max_batch_size | s / image-sample | × auto (or × best) |")
            print("|---|---|---|")
            reference = best.get("auto", min(best.values()))
            for size in sizes:
                label = f"auto ({auto})" if size == "auto" else str(size)
                print(f"| {label} | {best[size] / slots:.4f} | {best[size] / reference:.2f} |")


def _interleaved_times(
    runs: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` rounds in which every run goes once, in turn."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(seconds(run, device))
    return times


def _print_compiled(args: argparse.Namespace, device: torch.device) -> None:
    """(f) DAVE with ``compile=True`` against eager DAVE and the plain passes."""
    for name in args.models:
        for batch in args.batch_sizes:
            setting = _setting(args, device, name, batch)
            options = {"num_samples": args.num_samples, "max_batch_size": args.max_batch}
            eager = DAVE(setting.model, autocast_dtype=args.autocast, **options)
            compiled = DAVE(setting.model, autocast_dtype=args.autocast, compile=True, **options)
            start = time.perf_counter()
            compiled_maps = compiled.attribute(setting.images, setting.target)
            first_call = time.perf_counter() - start
            eager_maps = eager.attribute(setting.images, setting.target)
            difference = float((compiled_maps - eager_maps).abs().max() / eager_maps.abs().max())
            runs: dict[str, Callable[[], object]] = {
                "N plain input-gradient passes": functools.partial(
                    _plain_gradient_passes,
                    setting.model,
                    setting.images,
                    setting.target,
                    args.num_samples,
                    setting.passes(),
                ),
                "DAVE default, eager": functools.partial(
                    eager.attribute, setting.images, setting.target
                ),
                "DAVE default, compile=True": functools.partial(
                    compiled.attribute, setting.images, setting.target
                ),
            }
            runs[next(iter(runs))]()  # the plain passes' warm-up
            times = _interleaved_times(runs, args.repeats, device)
            medians = {row: statistics.median(taken) for row, taken in times.items()}
            eager_median = medians["DAVE default, eager"]
            print(
                f"\n(f) {name}, B = {batch}, N = {args.num_samples}, {setting.passes()} inputs per "
                f"pass, {args.dtype}: medians of {args.repeats} interleaved repeats\n"
            )
            print("| what | ms / image (median) | ms / image (best) | × eager DAVE | × plain |")
            print("|---|---|---|---|---|")
            plain = medians["N plain input-gradient passes"]
            for row, taken in times.items():
                print(
                    f"| {row} | {1e3 * medians[row] / batch:.1f} | {1e3 * min(taken) / batch:.1f} "
                    f"| {medians[row] / eager_median:.2f} | {medians[row] / plain:.2f} |"
                )
            print(
                f"\nfirst compiled call (compilation included): {first_call:.1f} s; largest "
                f"|compiled - eager| / max |eager| of the maps: {difference:.1e}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    args = _parse(parser)
    if args.memory_probe:
        print(json.dumps(_memory_probe(json.loads(args.memory_probe))))
        return
    device = torch.device(args.device)
    print(
        f"device: {device} ({_device_name(device)}), "
        f"torch {torch.__version__}, timm {timm.__version__}"
    )
    if args.stages or args.sweep or args.compile:
        if args.stages:
            _print_stages(args, device)
        if args.sweep:
            _print_sweep(args, device)
        if args.compile:
            _print_compiled(args, device)
        return
    print("\n(a) vs N batched plain input-gradient passes, (b) vs a one-sample-at-a-time loop\n")
    print("| model | B | N | DAVE s | plain N passes s | (a) ratio | naive loop s | (b) speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for batch in args.batch_sizes:
            print(_speed_row(args, device, name, batch), flush=True)
    print(
        f"\n(c) peak memory above the model (MB), {args.models[0]}, B = {args.memory_batch}, "
        f"max_batch_size = {MEMORY_CHUNK}\n"
    )
    print("| N | robust | mean | robust buffer (B·N·C·H·W·4) |")
    print("|---|---|---|---|")
    for row in _memory_rows(args, device):
        print(row, flush=True)


if __name__ == "__main__":
    main()
