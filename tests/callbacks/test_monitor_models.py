"""Models as users have them: replaced heads, dict outputs, odd inputs (issue 15, item 6)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dave_lightning import BadInputError, UnsupportedModelError, get_attributor
from dave_lightning.callbacks import AttributionMonitor
from dave_lightning.callbacks._setup_checks import check_network_output
from tests.callbacks.helpers import TinyClassifier
from tests.helpers import tiny_vit

METHODS = ["dave", "gradient", "smoothgrad"]


def _replaced_head() -> nn.Module:
    model = tiny_vit(num_classes=5)
    model.head = nn.Linear(32, 8)  # no reset_classifier: timm's num_classes stays 5
    return model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_targets_are_checked_against_the_replaced_heads_width(method: str) -> None:
    model = _replaced_head()
    attributor = get_attributor(method, model, **({"num_samples": 2} if method == "dave" else {}))
    images = torch.rand(2, 3, 32, 32)
    maps = attributor.attribute(images, torch.tensor([7, 6]))
    assert maps.shape == (2, 32, 32)
    with pytest.raises(BadInputError, match=r"`target`: expected class indices in \[0, 8\)"):
        attributor.attribute(images, torch.tensor([8, 0]))


class _Counting(nn.Module):
    """Wraps a classifier; counts forwards; returns its logits as ``kind`` says."""

    def __init__(self, kind: str = "tensor") -> None:
        super().__init__()
        self.model = tiny_vit(num_classes=5)
        self.kind = kind
        self.calls = 0

    def forward(self, x: torch.Tensor) -> Any:
        self.calls += 1
        logits = self.model(x)
        return {"dict": {"logits": logits}, "tuple": (logits, x)}.get(self.kind, logits)


@pytest.mark.parametrize(
    ("kind", "received"),
    [("dict", r"a dict with keys \['logits'\]"), ("tuple", r"a tuple of 2")],
)
def test_a_forward_returning_a_dict_or_tuple_is_a_clear_error(kind: str, received: str) -> None:
    model = _Counting(kind).eval()
    pattern = rf"`model`: expected a classifier whose forward returns .* received {received}"
    with pytest.raises(BadInputError, match=pattern):
        get_attributor("gradient", model).attribute(torch.rand(1, 3, 32, 32), 0)
    with pytest.raises(BadInputError, match=pattern):
        check_network_output(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), True)


def test_labels_outside_the_models_output_fail_with_the_probe_check() -> None:
    model = _Counting().eval()
    with pytest.raises(
        BadInputError, match=r"`batch labels`: expected class indices in \[0, 5\) .* from 0 to 6"
    ):
        check_network_output(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 6]), True)
    check_network_output(model.train(), torch.rand(2, 3, 32, 32), torch.tensor([0, 4]), True)
    assert all(m.training for m in model.modules())  # modes restored


@pytest.mark.parametrize(
    ("images", "pattern"),
    [
        (torch.rand(1, 3, 32, 32).half(), r"`images`: expected torch.float32 images"),
        (torch.rand(1, 3, 32, 32).bfloat16(), r"`images`: expected torch.float32 images"),
        (torch.rand(1, 3, 32, 32).double(), r"`images`: expected torch.float32 images"),
        (torch.rand(1, 3, 48, 48), r"`images`: expected 32x32 images, the size the model"),
    ],
    ids=["float16", "bfloat16", "float64", "48x48"],
)
@pytest.mark.parametrize("method", METHODS)
def test_images_of_another_dtype_or_size_fail_before_any_pass(
    method: str, images: torch.Tensor, pattern: str
) -> None:
    model = _Counting().eval()
    attributor = get_attributor(method, model, **({"num_samples": 2} if method == "dave" else {}))
    with pytest.raises(BadInputError, match=pattern):
        attributor.attribute(images, 0)
    assert model.calls == 0


@pytest.mark.parametrize(
    "target", [torch.tensor(3), np.int64(3), np.int32(3)], ids=["0-d", "int64", "int32"]
)
def test_a_0d_tensor_or_numpy_integer_target_means_that_class(target: Any) -> None:
    model = tiny_vit(num_classes=5).eval()
    attributor = get_attributor("gradient", model)
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(attributor.attribute(images, target), attributor.attribute(images, 3))


class _WithTeacher(TinyClassifier):
    """An EMA copy and a convolutional teacher with many BatchNorms beside the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.ema = copy.deepcopy(self.model)
        self.teacher = nn.Sequential(*[nn.BatchNorm2d(3) for _ in range(60)])


def test_an_unsupported_lightning_module_error_is_short_and_names_the_fix() -> None:
    monitor = AttributionMonitor(methods=["gradient", "dave"])
    with pytest.raises(UnsupportedModelError) as caught:
        monitor.setup_monitor(_WithTeacher())
    message = str(caught.value)
    assert len(message) < 700, message
    assert "model_attribute='model'" in message
    assert "and 57 more" in message
    AttributionMonitor(methods=["dave"], model_attribute="model").setup_monitor(_WithTeacher())
