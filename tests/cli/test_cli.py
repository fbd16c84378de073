"""The `dave-lightning` console script end to end, on tiny settings, with every error path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

pytestmark = pytest.mark.slow  # every test runs the console script in a fresh interpreter

SCRIPT = Path(sys.executable).parent / "dave-lightning"
"""The console script of the environment running the tests (not whatever PATH finds)."""

TINY_DEMO = [
    "--epochs",
    "2",
    "--train-size",
    "48",
    "--val-size",
    "24",
    "--image-size",
    "32",
    "--batch-size",
    "16",
    "--num-samples",
    "2",
    "--num-images",
    "12",
    "--no-progress",
]


def _run(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    if not SCRIPT.is_file():
        pytest.fail(f"the console script {SCRIPT} is missing: run `pip install -e .` first")
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def _one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def _absent_gpu() -> str:
    """A CUDA device this machine lacks: ``cuda`` without a GPU, else one past the last."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def test_demo_prints_the_table_and_writes_its_outputs(tmp_path: Path) -> None:
    result = _run("demo", "--out", tmp_path, *TINY_DEMO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "epoch | train acc | val acc | GridPG dave | GridPG gradient | EnergyPG dave" in out
    assert out.count("\n    ") >= 2  # one row per epoch
    assert f"tensorboard --logdir {tmp_path}" in out
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "figures").glob("overlays_*.png")) == [
        "overlays_epoch000.png",
        "overlays_epoch001.png",
    ]
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert "Verdict" not in out


def test_demo_spurious_prints_a_verdict_and_explain_reads_its_checkpoint(tmp_path: Path) -> None:
    result = _run("demo", "--spurious", "--out", tmp_path / "run", *TINY_DEMO)
    assert result.returncode == 0, result.stderr
    assert "on images without the mark" in result.stdout
    assert "Verdict:" in result.stdout
    image = tmp_path / "shape.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype("uint8")).save(
        image
    )
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    explained = _run(
        "explain",
        image,
        "--checkpoint",
        checkpoint,
        "--num-samples",
        "2",
        "--out",
        tmp_path / "png",
    )
    assert explained.returncode == 0, explained.stderr
    written = tmp_path / "png" / "shape_dave.png"
    assert explained.stdout.strip() == str(written)
    assert Image.open(written).size[0] > 100


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain")
    image = root / "photo.jpg"
    Image.fromarray((np.random.default_rng(1).random((30, 30, 3)) * 255).astype("uint8")).save(
        image
    )
    (root / "broken.png").write_text("not an image")
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1, num_classes=4
    )
    torch.save(model.state_dict(), root / "weights.pt")
    (root / "garbage.ckpt").write_bytes(b"\x00garbage")
    (root / "notes.ckpt").write_text("hello")
    return {"image": image, "root": root}


TINY_MODEL = [
    "--model",
    "vit_tiny_patch16_224",
    "--model-arg",
    "img_size=32",
    "--model-arg",
    "patch_size=8",
    "--model-arg",
    "depth=1",
]


def test_explain_a_state_dict_with_a_baseline_and_a_fixed_target(files: dict[str, Path]) -> None:
    root = files["root"]
    result = _run(
        "explain",
        files["image"],
        *TINY_MODEL,
        "--checkpoint",
        root / "weights.pt",
        "--method",
        "gradient",
        "--target",
        "3",
        "--out",
        root / "out",
    )
    assert result.returncode == 0, result.stderr
    assert (root / "out" / "photo_gradient.png").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.png", *TINY_MODEL], "error: image not found: .*missing.png"),
        (["broken.png", *TINY_MODEL], "error: cannot read image .*broken.png"),
        (
            ["photo.jpg", "--model", "vit_does_not_exist"],
            "error: unknown timm model 'vit_does_not_exist'",
        ),
        (
            ["photo.jpg", "--model", "vit_tiny_patch16_224", "--checkpoint", "weights.pt"],
            r"error: the checkpoint does not fit the model: .*with another shape \(e.g. pos_embed",
        ),
        (["photo.jpg", *TINY_MODEL, "--checkpoint", "nowhere.ckpt"], "error: checkpoint not found"),
        (
            ["photo.jpg", *TINY_MODEL, "--checkpoint", "garbage.ckpt"],
            "error: cannot read checkpoint .*garbage.ckpt: UnpicklingError",
        ),
        (
            ["photo.jpg", *TINY_MODEL, "--checkpoint", "notes.ckpt"],
            r"error: cannot read checkpoint .*notes.ckpt: not a file written by torch.save, or a "
            r"damaged one \(KeyError",
        ),
        (
            ["photo.jpg", *TINY_MODEL, "--num-classes", "4", "--target", "9"],
            "error: --target 9 is outside the model's 4 classes",
        ),
        (
            ["photo.jpg", *TINY_MODEL, "--method", "gradcam"],
            "error: --method 'gradcam' is not a method; available: dave, gradient",
        ),
        (["photo.jpg"], r"error: give --model NAME"),
        (
            ["photo.jpg", *TINY_MODEL, "--model-arg", "bogus=1"],
            r"error: timm model 'vit_tiny_patch16_224' does not take the arguments .*'bogus': 1.*"
            r"TypeError: .*unexpected keyword argument 'bogus'",
        ),
        (
            ["photo.jpg", *TINY_MODEL, "--device", _absent_gpu()],
            r"error: --device cuda(:\d+)?: this machine has \d+ CUDA GPUs; use --device cpu",
        ),
        (
            ["photo.jpg", "--model", "resnet18", "--num-classes", "3"],
            r"error: effective mode cannot freeze ResNet: --method dave needs a timm ViT "
            r"\(e\.g\. vit_tiny_patch16_224\); --method gradient works with any model$",
        ),
    ],
)
def test_explain_errors_are_one_line_with_a_non_zero_status(
    files: dict[str, Path], arguments: list[str], message: str
) -> None:
    root = files["root"]
    resolved = [
        str(root / a) if a.endswith((".png", ".jpg", ".pt", ".ckpt")) else a for a in arguments
    ]
    _one_line_error(_run("explain", *resolved, "--out", root / "out"), message)


def test_explain_pretrained_without_network_is_one_line(
    files: dict[str, Path], tmp_path: Path
) -> None:
    offline = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    result = _run(
        "explain",
        files["image"],
        "--model",
        "vit_tiny_patch16_224",
        "--pretrained",
        "--out",
        tmp_path / "out",
        env=offline,
        timeout=180,
    )
    _one_line_error(result, r"error: cannot fetch the pretrained weights of 'vit_tiny_patch16_224'")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "nonexistent_vit"], r"error: unknown timm model 'nonexistent_vit'"),
        pytest.param(
            ["--device", "cuda"],
            r"error: --device cuda: no CUDA GPU is available here; use --device cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_demo_errors_are_one_line_with_a_non_zero_status(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    _one_line_error(_run("demo", *arguments, "--out", tmp_path, *TINY_DEMO), message)


def test_help_lists_both_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout
    assert "explain" in result.stdout


def test_demo_help_says_where_the_spurious_mark_goes() -> None:
    result = _run("demo", "--help")
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    assert "inside every training and validation image away from the object" in help_text
    assert "corner" not in help_text
