"""Bad command-line values: one line naming the flag, status 2, before any work is spent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import dave_lightning.demo.run
import dave_lightning.explain
from dave_lightning.cli import main


def _no_work(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("work started before the bad value was refused")


@pytest.fixture
def forbid_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a model (the first piece of work) fails the test."""
    monkeypatch.setattr(dave_lightning.explain, "build_model", _no_work)
    monkeypatch.setattr(dave_lightning.demo.run, "build_classifier", _no_work)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _one_line(capsys: pytest.CaptureFixture[str], status: int, pattern: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert pattern in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--epochs", "-1"], "error: `--epochs`: expected an integer >= 1, received -1."),
        (["--epochs", "-5"], "error: `--epochs`: expected an integer >= 1, received -5."),
        (["--epochs", "0"], "error: `--epochs`: expected an integer >= 1, received 0."),
        (["--batch-size", "0"], "error: `--batch-size`: expected an integer >= 1, received 0."),
        (["--train-size", "0"], "`--train-size`: expected an integer >= 1"),
        (["--val-size", "-3"], "`--val-size`: expected an integer >= 1"),
        (["--num-samples", "0"], "`--num-samples`: expected an integer >= 1"),
        (["--num-images", "0"], "`--num-images`: expected an integer >= 1"),
        (["--seed", "-1"], "error: `--seed`: expected an integer in [0, 4294967295], received -1."),
        (["--seed", str(2**32)], "`--seed`: expected an integer in [0, 4294967295]"),
        (
            ["--image-size", "30"],
            "error: `--image-size`: expected a multiple of the model's patch size 8, at least "
            "16, received 30.",
        ),
        (["--image-size", "8"], "`--image-size`: expected a multiple of the model's patch size"),
        (["--methods", "dave,gradcam"], "`--methods`: expected comma-separated names among dave"),
        (["--methods", ","], "`--methods`: expected comma-separated names among dave"),
        (
            ["--model", "resnet18"],
            "error: `--model`: the demo needs a ViT (a timm VisionTransformer such as "
            "vit_tiny_patch16_224 or deit_tiny_patch16_224); resnet18 is a ResNet",
        ),
        (["--model", "vit_nope_patch16"], "error: unknown timm model 'vit_nope_patch16'"),
    ],
)
def test_demo_refuses_bad_values_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forbid_work: None,
    arguments: list[str],
    message: str,
) -> None:
    status = main(["demo", "--out", str(tmp_path / "run"), *arguments])
    line = _one_line(capsys, status, message)
    assert line.startswith("dave-lightning demo: error: ")
    assert not (tmp_path / "run").exists()  # values are checked before the folder is made


def test_the_demo_vit_check_builds_nothing_real(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], forbid_work: None
) -> None:
    """Even a huge ViT is checked in well under a second (on the meta device)."""
    start = time.perf_counter()
    status = main(["demo", "--out", str(tmp_path), "--model", "vit_huge_patch14_224"])
    elapsed = time.perf_counter() - start
    assert status == 2  # forbid_work's AssertionError is not a DaveError: it would raise
    _one_line(capsys, status, "`--image-size`: expected a multiple of the model's patch size 14")
    assert elapsed < 5


@pytest.mark.parametrize("where", ["file", "under_a_file", "proc"])
def test_demo_and_explain_refuse_an_out_they_cannot_write(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forbid_work: None,
    photo: Path,
    where: str,
) -> None:
    (tmp_path / "notes.txt").write_text("not a folder")
    out = {
        "file": tmp_path / "notes.txt",
        "under_a_file": tmp_path / "notes.txt" / "run",
        "proc": Path("/proc/dave-lightning-test"),
    }[where]
    expected = "a folder, received the file" if where == "file" else "a folder this user can"
    status = main(["demo", "--out", str(out)])
    _one_line(capsys, status, f"dave-lightning demo: error: `--out`: expected {expected}")
    status = main(["explain", str(photo), "--model", "resnet18", "--out", str(out)])
    _one_line(capsys, status, f"dave-lightning explain: error: `--out`: expected {expected}")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--num-samples", "0"], "error: --num-samples must be at least 1, not 0"),
        (["--num-samples", "-2"], "error: --num-samples must be at least 1, not -2"),
        (["--num-classes", "0"], "error: --num-classes must be at least 1, not 0"),
        (["--target", "-1"], "error: --target must be 'pred' or a class index (0, 1, ...), not"),
        (["--target", "cat"], "error: --target must be 'pred' or a class index (0, 1, ...), not"),
        (["--device", "nonsense"], "error: --device 'nonsense'"),
    ],
)
def test_explain_refuses_bad_values_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forbid_work: None,
    photo: Path,
    arguments: list[str],
    message: str,
) -> None:
    status = main(
        ["explain", str(photo), "--model", "resnet18", "--out", str(tmp_path / "o"), *arguments]
    )
    _one_line(capsys, status, message)
