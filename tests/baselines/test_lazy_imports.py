"""The registry imports a method's module only when that method is first asked for.

The check runs in one fresh interpreter (this test process has long imported Captum): it steps
through importing the package, listing the names and building each method that does not use
Captum, recording after each step whether Captum is imported, then asks for a Captum baseline.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import dave_lightning.baselines as baselines

_STEPS = """
import sys
steps = []
def record(step):
    steps.append((step, 'captum' in sys.modules))
import dave_lightning, dave_lightning.baselines
from dave_lightning import DAVE, available_attributors, get_attributor
record('import')
assert 'integrated_gradients' in available_attributors()
record('list')
from timm.models.vision_transformer import VisionTransformer
model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                          num_classes=4)
for name in ('dave', 'effective_input_x_gradient', 'legrad', 'random'):
    get_attributor(name, model)
    record(name)
get_attributor('integrated_gradients', model)
record('integrated_gradients')
print(steps)
"""


def test_captum_is_imported_only_for_a_captum_baseline() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _STEPS], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = dict(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    assert steps == {
        "import": False,
        "list": False,
        "dave": False,
        "effective_input_x_gradient": False,
        "legrad": False,
        "random": False,
        "integrated_gradients": True,
    }


def test_the_baselines_package_still_exports_every_name() -> None:
    assert set(baselines.__all__) <= set(dir(baselines))
    for name in baselines.__all__:
        assert getattr(baselines, name) is not None
