"""Image files as RGB pictures the way a viewer shows them: EXIF orientation, 16-bit, float.

``PIL.Image.convert("RGB")`` alone gets three common kinds of file wrong without a word: it
ignores the EXIF orientation (phone photos come out sideways), clips 16-bit samples to 255 (a
16-bit greyscale PNG comes out white) and truncates float samples in [0, 1] to 0 or 1 (a float
TIFF comes out black). :func:`load_rgb` applies the orientation and scales 16-bit integers by
65535 and floats by 255, refusing float images outside [0, 1] and integer images outside
[0, 65535], whose intended range it cannot know.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "grey16.png"
    >>> Image.fromarray(np.full((2, 3), 65535, dtype=np.uint16)).save(path)
    >>> picture = load_rgb(path)
    >>> picture.mode, picture.size, picture.getpixel((0, 0))
    ('RGB', (3, 2), (255, 255, 255))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dave_lightning.errors import BadInputError

__all__ = ["load_rgb"]

_INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_MAX_16_BIT = 65535


def load_rgb(path: Path) -> Image.Image:
    """Read an image file into an 8-bit RGB picture, upright, with its samples scaled to 0..255.

    Args:
        path: An image file PIL can read.

    Returns:
        The RGB picture (alpha dropped, palette and greyscale expanded).

    Raises:
        BadInputError: When the file is missing, not an image PIL reads, larger than PIL's
            decompression-bomb limit, or has samples outside the range its kind allows.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright, path)
    except Image.DecompressionBombError as error:
        raise BadInputError(
            f"image {path} is too large: {_megapixels(error)}; PIL refuses more than "
            f"{2 * _limit() / 1e6:.0f} megapixels (a decompression-bomb guard): downscale it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise BadInputError(f"cannot read image {path}: {error}") from None


def _limit() -> int:
    return int(Image.MAX_IMAGE_PIXELS or 0)


def _megapixels(error: Exception) -> str:
    """PIL's "Image size (N pixels) exceeds ..." message as megapixels."""
    words = str(error).replace("(", " ").split()
    counts = [int(word) for word in words if word.isdigit()]
    return f"{counts[0] / 1e6:.0f} megapixels" if counts else "too many pixels"


def _to_rgb(image: Image.Image, path: Path) -> Image.Image:
    if image.mode in _INTEGER_MODES:
        return _scaled(np.asarray(image, dtype=np.float64), _MAX_16_BIT, "16-bit", path)
    if image.mode == "F":
        return _scaled(np.asarray(image, dtype=np.float64), 1.0, "float", path)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL's own advice for palettes with transparency
    try:
        return image.convert("RGB")
    except ValueError as error:  # modes PIL cannot convert (e.g. LAB)
        raise BadInputError(
            f"cannot read image {path}: its mode {image.mode} has no RGB conversion ({error})"
        ) from None


def _scaled(samples: np.ndarray, top: float, kind: str, path: Path) -> Image.Image:
    """Map ``[0, top]`` to ``[0, 255]`` (rounded), as greyscale replicated to RGB."""
    if samples.size and not np.isfinite(samples).all():
        raise BadInputError(f"{kind} image {path} has NaN or infinite values")
    low, high = (float(samples.min()), float(samples.max())) if samples.size else (0.0, 0.0)
    if low < 0 or high > top:
        raise BadInputError(
            f"{kind} image {path} has values in [{low:g}, {high:g}]; expected [0, {top:g}] "
            "(convert it to 8-bit first)"
        )
    grey = np.rint(samples * (255.0 / top)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
