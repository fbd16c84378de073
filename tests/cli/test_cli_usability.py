"""Small things a new user trips on: --version, usage, help, suggestions, pickles, offline hub."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from huggingface_hub import constants
from PIL import Image

import dave_lightning
import dave_lightning._timm_models
from dave_lightning.cli import main
from dave_lightning.errors import ModelCreationError
from dave_lightning.explain import create_model
from dave_lightning.registry import available_attributors


def _exit_status(arguments: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    return int(exited.value.code or 0)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dave-lightning {dave_lightning.__version__}"


@pytest.mark.parametrize("command", ["explain", "demo"])
def test_an_unknown_flag_prints_the_command_usage(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    required = ["x.png", "--out", "o"] if command == "explain" else []
    assert _exit_status([command, *required, "--bogus", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: dave-lightning {command} [-h]")
    assert err.strip().endswith(
        f"dave-lightning {command}: error: unrecognized arguments: --bogus 1"
    )


def test_an_unknown_top_level_flag_prints_the_top_level_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _exit_status(["--bogus"]) == 2
    assert capsys.readouterr().err.startswith("usage: dave-lightning [-h] [--version] COMMAND")


def test_explain_help_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["explain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("attribution method (default dave): ")[1]
    for name in available_attributors():
        assert name in listed


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("method", "hint"),
    [("gradcam", ""), ("rollout", ""), ("gradent", " (did you mean 'gradient'?)")],
)
def test_a_method_suggestion_only_when_one_is_close(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str, hint: str
) -> None:
    status = main(["explain", str(photo), "--model", "resnet18", "--method", method, "--out",
                   str(tmp_path / "o")])  # fmt: skip
    assert status == 2
    assert capsys.readouterr().err.startswith(
        f"dave-lightning explain: error: --method {method!r} is not a method{hint}; available: "
    )


def test_a_pickled_whole_model_is_one_plain_sentence(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1)
    torch.save(model, tmp_path / "whole.pt")
    status = main(["explain", str(photo), "--checkpoint", str(tmp_path / "whole.pt"),
                   "--model", "vit_tiny_patch16_224", "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert "\x1b" not in err
    assert err.count("\n") == 1
    assert err.strip() == (
        f"dave-lightning explain: error: cannot read checkpoint {tmp_path / 'whole.pt'}: "
        "UnpicklingError: it holds pickled Python objects (here "
        "timm.models.vision_transformer.VisionTransformer, as torch.save(model) writes), which "
        "explain never unpickles (torch.load with weights_only=True, for safety); save the "
        "weights with torch.save(model.state_dict(), path) instead"
    )


TINY = {"img_size": 32, "patch_size": 8, "depth": 1}


def test_an_unreachable_hub_turns_on_offline_mode_for_the_download_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No connection: timm is asked in offline mode (no retries), and the flag is restored."""
    seen: list[bool] = []

    def fake_create_model(*args: Any, **kwargs: Any) -> None:
        seen.append(constants.HF_HUB_OFFLINE)
        raise OSError("cannot find the requested files in the local cache")

    monkeypatch.setattr(dave_lightning._timm_models, "hub_reachable", lambda: False)
    monkeypatch.setattr(timm, "create_model", fake_create_model)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelCreationError, match="cannot fetch the pretrained weights"):
        create_model("vit_tiny_patch16_224", pretrained=True)
    assert seen == [True]
    assert constants.HF_HUB_OFFLINE is False


def test_a_reachable_hub_is_used_online(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def fake_create_model(*args: Any, **kwargs: Any) -> torch.nn.Module:
        seen.append(constants.HF_HUB_OFFLINE)
        return torch.nn.Identity()

    monkeypatch.setattr(dave_lightning._timm_models, "hub_reachable", lambda: True)
    monkeypatch.setattr(timm, "create_model", fake_create_model)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    create_model("vit_tiny_patch16_224", pretrained=True)
    assert seen == [False]


@pytest.mark.slow
def test_pretrained_without_network_fails_within_seconds() -> None:
    """On a machine without network (like CI here): one error within seconds, not ~60 s."""
    if dave_lightning._timm_models.hub_reachable():
        pytest.skip("the Hugging Face Hub is reachable from here")
    start = time.perf_counter()
    with pytest.raises(ModelCreationError, match="cannot fetch the pretrained weights") as caught:
        create_model("vit_tiny_patch16_224", pretrained=True, **TINY)
    assert time.perf_counter() - start < 20  # retries took about 55 s before
    assert "\n" not in str(caught.value)
