"""Every ```python block of README.md runs as pasted: self-contained, offline, in a new process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def python_blocks(text: str) -> dict[str, str]:
    """The fenced Python blocks of a Markdown text, keyed by the heading above each."""
    blocks: dict[str, str] = {}
    for match in _BLOCK.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        title = headings[-1] if headings else "top"
        key = title if title not in blocks else f"{title} ({len(blocks)})"
        blocks[key] = match.group(1)
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_its_python_blocks() -> None:
    assert set(BLOCKS) >= {
        "DAVE in ten lines",
        "Metrics in ten lines",
        "The callback in ten lines",
    }


@pytest.mark.parametrize("title", sorted(BLOCKS))
def test_a_readme_block_defines_every_name_it_uses_and_uses_every_import(
    title: str, tmp_path: Path
) -> None:
    """Pyflakes' checks (ruff F): undefined names, unused imports; fast, before running it."""
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[title], encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "F",
            "--isolated",
            script,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("title", sorted(BLOCKS))
def test_a_readme_block_runs_as_pasted(title: str, tmp_path: Path) -> None:
    """Offline (no hub access), in an empty working folder, within a few minutes."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKS[title]],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(README.parent)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
