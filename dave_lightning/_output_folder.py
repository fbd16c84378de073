"""Output folders checked (and created) before any work, so a bad ``--out`` costs nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from dave_lightning.errors import BadInputError

__all__ = ["writable_folder"]


def writable_folder(path: Path, flag: str) -> Path:
    """Create ``path`` (and its parents) unless it exists, and check a file can be written there.

    Args:
        path: The folder.
        flag: The option that named it, for the message (e.g. ``"--out"``).

    Returns:
        ``path``.

    Raises:
        BadInputError: When ``path`` is a file, cannot be created, or is not writable.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> writable_folder(root / "a" / "b", "--out").is_dir()
        True
        >>> (root / "notes.txt").write_text("x")
        1
        >>> writable_folder(root / "notes.txt", "--out")
        Traceback (most recent call last):
        ...
        dave_lightning.errors.BadInputError: `--out`: expected a folder, received the file ...
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInputError.for_argument(flag, "a folder", f"the file {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise BadInputError.for_argument(
            flag, "a folder this user can write to", f"{path} ({reason})"
        ) from None
    return path
