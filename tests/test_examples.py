"""Every example runs offline on tiny settings (ImageFolder included, from local files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(EXAMPLES / script), *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=cwd, timeout=600
    )


TINY_FIT = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.callbacks.init_args.num_samples",
    "2",
    "--trainer.callbacks.init_args.num_images",
    "8",
]


@pytest.mark.slow
def test_finetune_on_the_embedded_data_from_the_yaml(tmp_path: Path) -> None:
    result = _run(
        "finetune_timm_vit.py",
        "fit",
        "--config",
        EXAMPLES / "finetune_timm_vit.yaml",
        "--data.train_size",
        "64",
        "--data.val_size",
        "32",
        *TINY_FIT,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "runs" / "finetune").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_finetune_on_an_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog", "owl"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for index in range(4):
                pixels = (rng.random((40, 48, 3)) * 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{index}.png")
    result = _run(
        "finetune_timm_vit.py",
        "fit",
        "--config",
        EXAMPLES / "finetune_timm_vit.yaml",
        "--data.data_dir",
        tmp_path / "data",
        "--data.image_size",
        "32",
        "--model.model_kwargs",
        '{"img_size": 32, "patch_size": 8, "depth": 1}',
        "--data.batch_size",
        "4",
        *TINY_FIT,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EnergyPG is skipped" in result.stderr  # ImageFolder batches carry no boxes


def test_attribute_batch(tmp_path: Path) -> None:
    result = _run(
        "attribute_batch.py",
        "--images",
        "2",
        "--num-samples",
        "2",
        "--out",
        tmp_path / "maps.png",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dave " in result.stdout
    assert (tmp_path / "maps.png").stat().st_size > 0


def test_custom_metrics(tmp_path: Path) -> None:
    result = _run("custom_metrics.py", "--images", "8", "--num-samples", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("EnergyPG", "GridPG", "deletion AUC", "patch artifacts"):
        assert name in result.stdout
