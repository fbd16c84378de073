"""Every example runs offline on tiny settings (ImageFolder included, from local files)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import timm
import yaml
from PIL import Image
from torchvision import transforms

from dave_lightning.data import IMAGENET_MEAN, IMAGENET_STD
from dave_lightning.demo import ImageClassifier

pytestmark = pytest.mark.slow  # every test runs an example script in a fresh interpreter

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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


def _finetune_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "finetune_timm_vit", EXAMPLES / "finetune_timm_vit.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image_folder(root: Path, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            pixels = (rng.random((size, size + 8, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(root / split / name / "0.png")
    return root


def test_the_yaml_model_states_the_preprocessing_the_embedded_data_gets() -> None:
    settings = yaml.safe_load((EXAMPLES / "finetune_timm_vit.yaml").read_text())
    model = ImageClassifier(
        settings["model"]["model_name"],
        num_classes=6,
        model_kwargs=settings["model"]["model_kwargs"],
    )
    data = _finetune_module().ImageFolderOrShapes(train_size=6, val_size=6)
    data.build(model)
    stated = timm.data.resolve_model_data_config(model.model)  # what explain and the monitor use
    assert (tuple(stated["mean"]), tuple(stated["std"])) == (IMAGENET_MEAN, IMAGENET_STD)
    assert stated["crop_pct"] == 1.0
    assert (data.val_set.mean, data.val_set.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert data.num_classes == 6


def test_image_folders_are_preprocessed_with_the_model_data_config(tmp_path: Path) -> None:
    model = ImageClassifier(  # a ViT with timm's own configuration: mean and std 0.5, crop 0.9
        "vit_tiny_patch16_224",
        num_classes=2,
        model_kwargs={"img_size": 32, "patch_size": 8, "depth": 1},
    )
    example = _finetune_module()
    data = example.ImageFolderOrShapes(data_dir=str(_image_folder(tmp_path)), image_size=32)
    assert data.num_classes == 2
    data.build(model)
    steps = {type(step): step for step in data.val_set.transform.transforms}
    assert steps[transforms.Normalize].mean.tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert steps[transforms.Normalize].std.tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert steps[transforms.Resize].size == 35  # 32 / crop_pct 0.9
    assert steps[transforms.CenterCrop].size == (32, 32)
    shapes = example.ImageFolderOrShapes(train_size=6, val_size=6, image_size=32)
    shapes.build(model)
    assert shapes.val_set.mean == (0.5, 0.5, 0.5)


def test_compare_methods_rejects_an_unknown_model(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "compare_methods.py"), "--models", "foo"]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --models: invalid choice: 'foo'" in result.stderr
    assert "'normal', 'short', 'spurious'" in result.stderr


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
