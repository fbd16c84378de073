"""Image files of every common kind load upright, in RGB, with samples scaled to 0..255."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dave_lightning.cli import main
from dave_lightning.errors import BadInputError
from dave_lightning.image_files import load_rgb

RNG = np.random.default_rng(0)


def _rgb(picture: Image.Image) -> np.ndarray:
    assert picture.mode == "RGB"
    return np.asarray(picture).astype(np.int64)


def _grey_as_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None].astype(np.int64), 3, axis=2)


def test_8_bit_rgb_is_unchanged(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_rgb(load_rgb(tmp_path / "rgb.png")), pixels)


def test_rgba_keeps_its_colour_channels(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(_rgb(load_rgb(tmp_path / "rgba.png")), pixels[..., :3])


def test_a_palette_image_is_looked_up(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    image = Image.fromarray(indices, "L")
    image = Image.frombytes("P", image.size, image.tobytes())
    image.putpalette(palette.flatten().tolist())
    image.save(tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    np.testing.assert_array_equal(_rgb(load_rgb(tmp_path / "palette.png")), palette[indices])


def test_8_bit_greyscale_is_replicated(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(_rgb(load_rgb(tmp_path / "grey.png")), _grey_as_rgb(grey))


def test_16_bit_greyscale_is_scaled_by_65535(tmp_path: Path) -> None:
    grey = np.array([[0, 257, 32768, 65535], [1000, 20000, 40000, 60000]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    expected = np.rint(grey.astype(np.float64) * 255 / 65535)  # 0, 1, 128, 255, 4, ...
    np.testing.assert_array_equal(_rgb(load_rgb(tmp_path / "grey16.png")), _grey_as_rgb(expected))


def test_a_float_tiff_in_0_1_is_scaled_by_255(tmp_path: Path) -> None:
    grey = np.array([[0.0, 0.25, 0.5], [0.75, 0.999, 1.0]], dtype=np.float32)
    Image.fromarray(grey).save(tmp_path / "grey.tiff")
    assert Image.open(tmp_path / "grey.tiff").mode == "F"
    expected = np.array([[0, 64, 128], [191, 255, 255]])  # rint(255 * value)
    np.testing.assert_array_equal(_rgb(load_rgb(tmp_path / "grey.tiff")), _grey_as_rgb(expected))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([[0.0, 2.5]], r"float image .* has values in \[0, 2.5\]; expected \[0, 1\]"),
        ([[-1.0, 0.5]], r"float image .* has values in \[-1, 0.5\]; expected \[0, 1\]"),
        ([[np.nan, 0.5]], r"float image .* has NaN or infinite values"),
    ],
)
def test_a_float_tiff_outside_0_1_is_refused(
    tmp_path: Path, values: list[list[float]], message: str
) -> None:
    Image.fromarray(np.array(values, dtype=np.float32)).save(tmp_path / "odd.tiff")
    with pytest.raises(BadInputError, match=message):
        load_rgb(tmp_path / "odd.tiff")


def test_a_32_bit_integer_image_beyond_16_bits_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "wide.tiff")
    with pytest.raises(BadInputError, match=r"16-bit image .* values in \[0, 70000\]"):
        load_rgb(tmp_path / "wide.tiff")


def _exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # "rotate 90 clockwise to display"
        (8, lambda a: np.rot90(a, 1)),  # "rotate 90 counter-clockwise to display"
    ],
)
def test_the_exif_orientation_is_applied(tmp_path: Path, orientation: int, upright: object) -> None:
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :8] = (255, 0, 0)  # red on the stored left edge, blue top-right block
    stored[:8, 24:] = (0, 0, 255)
    _exif_jpeg(tmp_path / "phone.jpg", stored, orientation)
    loaded = _rgb(load_rgb(tmp_path / "phone.jpg"))
    expected = upright(stored).astype(np.int64)  # type: ignore[operator]
    assert loaded.shape == expected.shape
    assert np.abs(loaded - expected).mean() < 4  # JPEG is lossy; a wrong turn differs by ~100


def _giant_jpeg_header(path: Path, width: int, height: int) -> None:
    """A small JPEG whose start-of-frame claims ``width x height`` (PIL checks on open)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def test_a_256_megapixel_jpeg_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _giant_jpeg_header(tmp_path / "huge.jpg", 16384, 16384)
    status = main(
        ["explain", str(tmp_path / "huge.jpg"), "--model", "resnet18", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert err == (
        f"dave-lightning explain: error: image {tmp_path / 'huge.jpg'} is too large: "
        "268 megapixels; PIL refuses more than 179 megapixels (a decompression-bomb guard): "
        "downscale it"
    )
