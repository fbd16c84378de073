"""dave_lightning.data depends only on torch, the standard library and dave_lightning.errors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dave_lightning.data

PACKAGE = Path(dave_lightning.data.__file__).parent
ALLOWED = {
    "__future__",
    "collections",
    "contextlib",
    "dataclasses",
    "math",
    "operator",
    "typing",
    "warnings",
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module)
    return roots


def test_modules_import_only_torch_errors_and_the_standard_library() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in imported_roots(path):
            root = name.split(".")[0]
            allowed = root in ALLOWED or root == "torch"
            allowed |= name in ("dave_lightning.errors", "dave_lightning._common")
            allowed |= name.startswith("dave_lightning.data")
            assert allowed, f"{path.name} imports {name}"


@pytest.mark.slow
def test_importing_the_data_layer_leaves_lightning_out() -> None:
    code = (
        "import sys, dave_lightning.data; "
        "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'torchmetrics') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
