"""The registry imports a method's module only when that method is first asked for.

Each check runs in a fresh interpreter, since this test process has long imported Captum.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_TINY_VIT = (
    "from timm.models.vision_transformer import VisionTransformer;"
    "model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,"
    " num_classes=4);"
)


def _imports_captum(code: str) -> bool:
    """Run ``code`` in a fresh interpreter; whether ``captum`` is imported afterwards."""
    probe = code + "; import sys; print('captum' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_importing_the_package_and_listing_names_leaves_captum_out() -> None:
    code = (
        "import dave_lightning, dave_lightning.baselines;"
        "from dave_lightning import DAVE, available_attributors, get_attributor;"
        "assert 'gradient' in available_attributors()"
    )
    assert not _imports_captum(code)


@pytest.mark.parametrize("name", ["dave", "effective_input_x_gradient", "legrad", "random"])
def test_methods_without_captum_leave_it_out(name: str) -> None:
    code = _TINY_VIT + f"from dave_lightning import get_attributor; get_attributor({name!r}, model)"
    assert not _imports_captum(code)


@pytest.mark.parametrize("name", ["gradient", "integrated_gradients", "smoothgrad"])
def test_a_captum_baseline_imports_captum_when_asked_for(name: str) -> None:
    code = _TINY_VIT + f"from dave_lightning import get_attributor; get_attributor({name!r}, model)"
    assert _imports_captum(code)


def test_the_baselines_package_still_exports_every_name() -> None:
    code = "from dave_lightning.baselines import *; print(sorted(dir()))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    import dave_lightning.baselines as baselines

    for name in baselines.__all__:
        assert name in result.stdout
