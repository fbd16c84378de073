"""``explain`` in-process: preprocessing, checkpoints, device and model errors, output names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint

from dave_lightning.cli import main
from dave_lightning.demo.run import DemoConfig, fit_classifier
from dave_lightning.explain import (
    ExplainError,
    ExplainOptions,
    ModelCreationError,
    build_model,
    create_model,
    explain_images,
    output_names,
    preprocess,
)

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
TRIPPED: list[str] = []


def _trip() -> dict[str, str]:
    TRIPPED.append("unpickled")
    return {}


class Tripwire:
    """Unpickling it runs ``_trip``: only a full (not weights-only) unpickler does that."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _trip, ()


def _picture(path: Path, height: int, width: int, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.slow
def test_a_demo_checkpoint_is_preprocessed_like_its_training_data(tmp_path: Path) -> None:
    config = DemoConfig(
        epochs=1, image_size=32, train_size=12, val_size=6, batch_size=6, progress=False
    )
    saver = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    module, _, val = fit_classifier(config, [saver])
    sample = val.sample(0)
    png = tmp_path / "val0.png"
    Image.fromarray(sample.pixels.permute(1, 2, 0).numpy()).save(png)  # exact: 8-bit pixels

    options = ExplainOptions(
        images=[png], out=tmp_path / "out", checkpoint=Path(saver.last_model_path)
    )
    model, class_names = build_model(options)
    with Image.open(png) as picture:
        images, data_config = preprocess([picture.convert("RGB")], model)

    assert data_config["crop_pct"] == 1.0
    assert images.shape == (1, 3, 32, 32)
    torch.testing.assert_close(images[0], sample.image, atol=1e-5, rtol=0)
    module.eval()
    with torch.no_grad():
        expected = module(sample.image[None])
        torch.testing.assert_close(model(images), expected, atol=1e-4, rtol=1e-4)
    assert class_names == list(val.classes)


def test_explain_uses_the_model_data_config(tmp_path: Path) -> None:
    mean, std = (0.1, 0.2, 0.3), (0.3, 0.4, 0.5)
    overlay = {"mean": mean, "std": std, "crop_pct": 0.5, "interpolation": "bilinear"}
    model = timm.create_model("vit_tiny_patch16_224", pretrained_cfg_overlay=overlay, **TINY)
    path = _picture(tmp_path / "wide.png", 40, 48)
    with Image.open(path) as picture:
        rgb = picture.convert("RGB")
        images, config = preprocess([rgb], model)
        # Independently: shorter side to 32 / crop_pct = 64, centre crop 32, then normalise.
        resized = np.asarray(rgb.resize((76, 64), Image.Resampling.BILINEAR), dtype=np.float32)
    crop = resized[16:48, 22:54] / 255
    expected = (crop - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    assert (config["mean"], config["std"], config["crop_pct"]) == (mean, std, 0.5)
    assert config["input_size"] == (3, 32, 32)
    assert images.shape == (1, 3, 32, 32)
    torch.testing.assert_close(images[0], torch.from_numpy(expected).permute(2, 0, 1))


def test_a_checkpoint_with_pickled_objects_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = timm.create_model("vit_tiny_patch16_224", num_classes=3, **TINY)
    checkpoint = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": model.state_dict(), "extra": Tripwire()}, checkpoint)
    image = _picture(tmp_path / "image.png", 32, 32)
    arguments = [f"--model-arg={key}={value}" for key, value in TINY.items()]
    status = main(
        ["explain", str(image), "--model", "vit_tiny_patch16_224", *arguments,
         "--checkpoint", str(checkpoint), "--method", "gradient", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2
    assert len(errors) == 1
    assert f"error: cannot read checkpoint {checkpoint}: UnpicklingError" in errors[0]
    assert TRIPPED == []


def test_offline_pretrained_weights_are_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache.\nmore")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelCreationError) as caught:
        create_model("vit_tiny_patch16_224", pretrained=True)
    message = str(caught.value)
    assert message.startswith("cannot fetch the pretrained weights of 'vit_tiny_patch16_224'")
    assert message.endswith(
        "LocalEntryNotFoundError: cannot find the requested files in the local cache."
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("vit_nope", {}, "unknown timm model 'vit_nope'"),
        ("vit_tiny_patch16_224", {"bogus": 1}, "does not take the arguments {'bogus': 1}"),
        ("vit_tiny_patch16_224", {**TINY, "num_heads": 5}, "cannot create timm model"),
    ],
)
def test_model_creation_errors_are_one_line(
    name: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelCreationError, match=message) as caught:
        create_model(name, **kwargs)
    assert "\n" not in str(caught.value)


def test_output_names_are_distinct_and_deterministic() -> None:
    images = [Path("a/x.png"), Path("b/x.jpg"), Path("c/y.png"), Path("d/y.png"), Path("z.png")]
    names = output_names(images, "dave")
    assert names == [
        "x_png_dave.png",
        "x_jpg_dave.png",
        "c_y_png_dave.png",
        "d_y_png_dave.png",
        "z_dave.png",
    ]
    assert output_names(images, "dave") == names
    assert output_names([Path("x.png"), Path("x.png")], "gradient") == [
        "x_png_1_gradient.png",
        "x_png_2_gradient.png",
    ]


@pytest.mark.slow
def test_explain_writes_one_file_per_image_when_names_clash(tmp_path: Path) -> None:
    images = [
        _picture(tmp_path / "a" / "x.png", 32, 32),
        _picture(tmp_path / "b" / "x.jpg", 32, 32, 1),
    ]
    options = ExplainOptions(
        images=images,
        out=tmp_path / "out",
        model="vit_tiny_patch16_224",
        method="gradient",
        num_classes=3,
        model_kwargs=TINY,
    )
    written = explain_images(options)
    assert [path.name for path in written] == ["x_png_gradient.png", "x_jpg_gradient.png"]
    assert all(path.stat().st_size > 0 for path in written)


@pytest.mark.slow
@pytest.mark.parametrize("progress", [True, False])
def test_explain_shows_one_progress_step_per_image(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], progress: bool
) -> None:
    images = [_picture(tmp_path / f"{k}.png", 32, 32, k) for k in range(3)]
    options = ExplainOptions(
        images=images,
        out=tmp_path / "out",
        model="vit_tiny_patch16_224",
        method="dave",
        num_samples=2,
        num_classes=3,
        model_kwargs=TINY,
        progress=progress,
    )
    written = explain_images(options)
    assert len(written) == 3
    err = capfd.readouterr().err
    assert ("explain (dave)" in err and "3/3" in err) is progress


@pytest.mark.slow
def test_explain_maps_do_not_depend_on_the_per_image_loop(tmp_path: Path) -> None:
    """Attributing one image at a time (for the bar) keeps each image's own random stream."""
    from dave_lightning.explain import _attribute

    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", num_classes=3, **TINY).eval()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    options = ExplainOptions(images=[], out=tmp_path, num_samples=2, progress=False)
    from dave_lightning.registry import get_attributor

    attributor = get_attributor("dave", model, num_samples=2)
    batch = attributor.attribute(images, targets)
    torch.testing.assert_close(_attribute(options, attributor, images, targets), batch)


@pytest.mark.slow
def test_explain_signed_draws_both_signs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dave_lightning.viz as viz

    seen: list[bool] = []
    original = viz.attribution_figure

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("signed", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(viz, "attribution_figure", spy)
    image = _picture(tmp_path / "x.png", 32, 32)
    arguments = [str(image), "--model", "vit_tiny_patch16_224", "--method", "gradient"]
    arguments += ["--num-classes", "3", "--no-progress", "--out", str(tmp_path / "out")]
    tiny = [f"--model-arg={key}={value}" for key, value in TINY.items()]
    assert main(["explain", *arguments, *tiny, "--signed"]) == 0
    assert main(["explain", *arguments, *tiny]) == 0
    assert seen == [True, False]


@pytest.mark.parametrize(
    ("flag", "bf16_here", "expected"),
    [
        ([], False, None),  # auto on a device without native bf16: float32
        ([], True, torch.bfloat16),  # auto on one with it
        (["--autocast", "off"], True, None),
        (["--autocast", "bf16"], False, torch.bfloat16),
    ],
)
def test_explain_autocast_reaches_the_attributor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: list[str],
    bf16_here: bool,
    expected: torch.dtype | None,
) -> None:
    import dave_lightning.explain as explain
    from dave_lightning import precision

    asked: list[torch.device] = []
    built: list[Any] = []

    def bf16_by_default(device: torch.device | str) -> bool:
        asked.append(torch.device(device))
        return bf16_here

    def recording(*args: Any, **kwargs: Any) -> Any:
        attributor = original(*args, **kwargs)
        built.append(attributor)
        return attributor

    original = explain.get_attributor
    monkeypatch.setattr(precision, "bf16_by_default", bf16_by_default)
    monkeypatch.setattr(explain, "get_attributor", recording)
    image = _picture(tmp_path / "x.png", 32, 32)
    arguments = [str(image), "--model", "vit_tiny_patch16_224", "--method", "gradient"]
    arguments += ["--num-classes", "3", "--no-progress", "--out", str(tmp_path / "out")]
    tiny = [f"--model-arg={key}={value}" for key, value in TINY.items()]
    assert main(["explain", *arguments, *tiny, *flag]) == 0
    (attributor,) = built
    assert attributor.autocast_dtype == expected
    assert asked == ([torch.device("cpu")] if not flag else [])


def test_explain_refuses_an_unknown_autocast_before_any_work(tmp_path: Path) -> None:
    options = ExplainOptions(images=[tmp_path / "missing.png"], out=tmp_path, autocast="int8")
    with pytest.raises(
        ExplainError, match=r"^--autocast must be one of off, auto, bf16, fp16, not 'int8'$"
    ):
        explain_images(options)
