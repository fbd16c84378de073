"""A 2-process gloo run on CPU must give exactly what one process gives on all the data."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dave_lightning.metrics import (
    EnergyPointingGame,
    GridPointingGame,
    PatchArtifactScore,
    PixelDeletion,
)
from tests.metrics.helpers import PixelLinear

WORLD_SIZE = 2
SHARDS = [slice(0, 3), slice(3, 8)]  # uneven on purpose
ONE_RANK_IDLE = [None, slice(0, 8)]  # rank 0 never calls update
DELETION = dict(steps=4, max_fraction=0.75, blur_kernel_size=3, blur_sigma=1.0)


def make_data() -> dict:
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(8, 6, 6, generator=generator, dtype=torch.float64)
    maps[5, 0, 0] = float("nan")  # rank 1 has a NaN map
    images = torch.randn(8, 2, 6, 6, generator=generator, dtype=torch.float64)
    boxes = [torch.tensor([[0.0, 0.0, 3.0 + i % 3, 4.0]], dtype=torch.float64) for i in range(8)]
    boxes[6] = torch.zeros(0, 4)  # rank 1 has an empty box set
    weight = torch.randn(3, 2, 6, 6, generator=generator, dtype=torch.float64)
    artifact_maps = maps + torch.randn(3, 3, generator=generator, dtype=torch.float64).repeat(2, 2)
    artifact_maps[1] = 0.5  # rank 0 has a constant map
    return dict(
        maps=maps,
        artifact_maps=artifact_maps,
        images=images,
        boxes=boxes,
        cells=torch.arange(8) % 4,
        target=torch.arange(8) % 3,
        model=PixelLinear(weight, torch.zeros(3, dtype=torch.float64)),
    )


def run_metrics(data: dict, part: slice | None) -> dict:
    grid = GridPointingGame(smoothing=3).set_dtype(torch.float64)
    energy = EnergyPointingGame().set_dtype(torch.float64)
    deletion = PixelDeletion(**DELETION).set_dtype(torch.float64)
    artifact = PatchArtifactScore(patch_size=3).set_dtype(torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NaN map, and compute before update on an idle rank
        if part is not None:
            grid.update(data["maps"][part], data["cells"][part])
            energy.update(data["maps"][part], data["boxes"][part])
            deletion.update(
                data["model"], data["images"][part], data["maps"][part], data["target"][part]
            )
            artifact.update(data["artifact_maps"][part])
        out = {"grid": grid.compute(), "energy": energy.compute(), "deletion": deletion.compute()}
        out["artifact"] = artifact.compute()
    out["grid_scores"] = grid.per_sample_scores()
    out["energy_scores"] = energy.per_sample_scores()
    out["deletion_auc"] = deletion.per_sample_auc()
    out["artifact_scores"] = artifact.per_sample_scores()
    with energy.sync_context():  # counters are states too: synced like the rest
        out["counts"] = (int(energy.num_nan), int(energy.num_empty), int(energy.count))
    with artifact.sync_context():
        out["artifact_counts"] = (int(artifact.num_nan), int(artifact.num_constant))
        out["artifact_chance"] = artifact.chance_sum / artifact.count
    return out


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        for name, shards in (("uneven", SHARDS), ("idle", ONE_RANK_IDLE)):
            result = run_metrics(make_data(), shards[rank])
            torch.save(result, os.path.join(out_dir, f"{name}{rank}.pt"))
    finally:
        dist.destroy_process_group()


def assert_same(left, right) -> None:
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same(left[key], right[key])
    elif isinstance(left, torch.Tensor):
        torch.testing.assert_close(left, right, atol=1e-12, rtol=1e-12)
    else:
        assert left == right


@pytest.mark.slow
def test_two_process_gloo_run_equals_one_process(tmp_path: Path):
    init_file = str(tmp_path / "ddp_init")  # a free rendezvous: the file must not exist yet
    context = mp.start_processes(
        worker,
        args=(init_file, str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 240
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("the DDP workers did not finish within 240 s")
    single = run_metrics(make_data(), slice(0, 8))
    assert single["counts"] == (1, 1, 6)
    assert single["grid_scores"].shape == (7,)
    assert single["artifact_counts"] == (1, 1)
    assert single["artifact_scores"].shape == (6,)
    for name in ("uneven", "idle"):
        for rank in range(WORLD_SIZE):
            assert_same(torch.load(tmp_path / f"{name}{rank}.pt"), single)
