"""Package-level promises: layering, public surface, the console script."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import dave_lightning


@pytest.mark.slow
def test_core_does_not_import_lightning_or_the_metrics() -> None:
    code = (
        "import sys, dave_lightning, dave_lightning.dave, dave_lightning.effective;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning')"
        " or m.startswith('dave_lightning.metrics') or m.startswith('dave_lightning.callbacks')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_metrics_import_neither_timm_nor_lightning() -> None:
    code = (
        "import sys, dave_lightning.metrics, dave_lightning.metrics.functional;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('timm', 'pytorch_lightning')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_names_resolve() -> None:
    assert dave_lightning.__version__
    for name in dave_lightning.__all__:
        assert getattr(dave_lightning, name) is not None
    assert set(dave_lightning.__all__) <= set(dir(dave_lightning))
    assert set(dave_lightning.__all__) == {"__version__", *dave_lightning._EXPORTS}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = dave_lightning.nope


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dave-lightning") is None, reason="console script not installed")
def test_console_script_exists() -> None:
    result = subprocess.run(
        ["dave-lightning", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_shared_helpers_depend_only_on_torch_and_the_errors() -> None:
    import ast
    from pathlib import Path

    source = Path(dave_lightning.__file__).with_name("_common.py").read_text()
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module)
        elif isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
    allowed = {
        "__future__",
        "contextlib",
        "collections.abc",
        "typing",
        "torch",
        "dave_lightning.errors",
    }
    assert roots <= allowed, roots - allowed


def test_dead_names_are_gone() -> None:
    import dave_lightning.dave as dave_module
    from dave_lightning.attributor import Attributor

    assert not hasattr(dave_module, "AUTO")  # the literal "auto" is what callers compare
    assert not hasattr(Attributor, "name")  # read by nothing but a test
