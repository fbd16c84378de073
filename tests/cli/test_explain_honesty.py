"""``explain`` says when its model has random weights, and names ImageNet classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import dave_lightning.viz
from dave_lightning.cli import main
from dave_lightning.explain import (
    ExplainOptions,
    RandomWeightsWarning,
    build_model,
    explain_images,
    imagenet_class_names,
)

TINY = ["img_size=32", "patch_size=8", "depth=1", "embed_dim=32", "num_heads=2"]
TINY_MODEL = ["--model", "vit_tiny_patch16_224"] + [f"--model-arg={a}" for a in TINY]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The titles ``explain`` puts on its figures (recorded, the figures still drawn)."""
    recorded: list[str] = []
    draw = dave_lightning.viz.attribution_figure

    def recording(*args: Any, **kwargs: Any) -> Any:
        recorded.extend(args[2] if len(args) > 2 else kwargs["titles"])
        return draw(*args, **kwargs)

    monkeypatch.setattr(dave_lightning.viz, "attribution_figure", recording)
    return recorded


def _state_dict(tmp_path: Path) -> Path:
    kwargs = {key: int(value) for key, value in (a.split("=") for a in TINY)}
    model = timm.create_model("vit_tiny_patch16_224", num_classes=4, **kwargs)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    return path


def _explain(*arguments: str | Path) -> int:
    return main(["explain", *map(str, arguments), "--method", "gradient"])


@pytest.mark.slow
def test_random_weights_are_one_loud_line_on_stderr_and_in_every_title(
    photo: Path, tmp_path: Path, titles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = _explain(photo, photo, *TINY_MODEL, "--out", tmp_path / "out")
    captured = capsys.readouterr()
    assert status == 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines == [
        "dave-lightning explain: warning: the model has random weights (no --pretrained, no "
        "--checkpoint): its predictions and maps mean nothing; pass --pretrained or "
        "--checkpoint FILE"
    ]
    assert len(titles) == 2
    assert all("RANDOM WEIGHTS" in title for title in titles)


@pytest.mark.slow
def test_a_checkpoint_is_explained_without_the_random_weights_notice(
    photo: Path, tmp_path: Path, titles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _state_dict(tmp_path)
    status = _explain(photo, *TINY_MODEL, "--checkpoint", weights, "--out", tmp_path / "out")
    assert status == 0
    assert "warning" not in capsys.readouterr().err
    assert len(titles) == 1
    assert "RANDOM" not in titles[0]
    assert titles[0].startswith("photo.png: class ")  # a 4-class head has no ImageNet names


@pytest.mark.slow
def test_the_library_call_warns_too(photo: Path, tmp_path: Path) -> None:
    options = ExplainOptions(
        images=[photo],
        out=tmp_path / "out",
        model="vit_tiny_patch16_224",
        method="gradient",
        model_kwargs={"img_size": 32, "patch_size": 8, "depth": 1},
    )
    with pytest.warns(RandomWeightsWarning, match="random weights"):
        explain_images(options)


@pytest.mark.slow
def test_imagenet_models_get_imagenet_class_names(
    photo: Path, tmp_path: Path, titles: list[str]
) -> None:
    status = _explain(photo, *TINY_MODEL, "--target", "281", "--out", tmp_path / "out")
    assert status == 0
    assert titles[0].startswith("photo.png: tabby (")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("index", "name"), [(0, "tench"), (1, "goldfish"), (281, "tabby"), (999, "toilet tissue")]
)
def test_imagenet_class_names_follow_the_synset_order(index: int, name: str) -> None:
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1)
    names = imagenet_class_names(model)
    assert names is not None
    assert len(names) == 1000
    assert names[index] == name


def test_a_resized_head_has_no_imagenet_names(tmp_path: Path) -> None:
    options = ExplainOptions(
        images=[],
        out=tmp_path,
        model="vit_tiny_patch16_224",
        num_classes=1000 - 1,
        model_kwargs={"img_size": 32, "patch_size": 8, "depth": 1},
    )
    assert build_model(options)[1] is None
