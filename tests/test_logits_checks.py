"""One check of a classifier's logits and class indices, used by every caller in the core."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import dave_lightning._noise_sensitivity as noise_sensitivity
import dave_lightning.attributor as attributor
import dave_lightning.data.selection as selection
from dave_lightning import calibrate_noise_alpha
from dave_lightning._common import check_class_indices, check_logits
from dave_lightning.baselines import Gradient
from dave_lightning.data import confidently_correct
from dave_lightning.errors import BadInputError


class _Output(nn.Module):
    """A model whose forward returns ``make(logits)`` for (B, 3) logits of a linear layer."""

    def __init__(self, make: Callable[[Tensor], Any]) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 3)
        self.make = make

    def forward(self, images: Tensor) -> Any:
        return self.make(self.linear(images.flatten(1)))


def test_every_caller_uses_the_one_check() -> None:
    for module in (attributor, noise_sensitivity, selection):
        assert module.check_logits is check_logits
    for module in (attributor, noise_sensitivity, selection):
        assert module.check_class_indices is check_class_indices
    assert not hasattr(attributor, "check_target_range")


@pytest.mark.parametrize(
    ("output", "rows", "min_classes", "message"),
    [
        (
            torch.zeros(2),
            None,
            1,
            "returning (B, num_classes) logits, received an output of shape (2,)",
        ),
        (
            torch.zeros(2, 3),
            4,
            1,
            "returning (4, num_classes) logits, received an output of shape (2, 3)",
        ),
        (torch.zeros(2, 1), 2, 2, "logits, num_classes >= 2, received an output of shape (2, 1)"),
        ((torch.zeros(2, 3),), None, 1, "the logits), received a tuple of 1"),
        (
            {"a": 1},
            None,
            1,
            "whose forward returns (B, num_classes) logits (wrap one that returns a",
        ),
        ("x", None, 1, "received str 'x'"),
    ],
)
def test_check_logits_names_the_model_and_what_it_returned(
    output: Any, rows: int | None, min_classes: int, message: str
) -> None:
    with pytest.raises(BadInputError) as info:
        check_logits(output, rows, min_classes=min_classes)
    assert str(info.value).startswith("`model`: expected a classifier ")
    assert message in str(info.value)


def test_check_logits_returns_good_logits() -> None:
    logits = torch.zeros(2, 3)
    assert check_logits(logits) is logits
    assert check_logits(logits, 2, min_classes=3) is logits


def test_check_class_indices() -> None:
    indices = torch.tensor([[0, 2]])
    assert check_class_indices(indices, 3) is indices
    assert check_class_indices(torch.tensor([7]), None) is not None
    with pytest.raises(
        BadInputError,
        match=r"^`target`: expected class indices in \[0, 3\), received indices from -1 to 2\.$",
    ):
        check_class_indices(torch.tensor([-1, 2]), 3)
    with pytest.raises(
        BadInputError,
        match=r"^`target`: expected class indices >= 0, received indices from -1 to -1\.$",
    ):
        check_class_indices(torch.tensor([-1]), None)
    with pytest.raises(
        BadInputError, match=r"^`labels`: expected below 3, received indices from 0 to 3\.$"
    ):
        check_class_indices(torch.tensor([0, 3]), 3, "labels", "below 3")


def test_a_one_dimensional_output_is_reported_alike_everywhere() -> None:
    model = _Output(lambda logits: logits[:, 0])
    images = torch.rand(2, 3, 4, 4)
    callers = [
        lambda: Gradient(model).attribute(images, 0),
        lambda: calibrate_noise_alpha(model, images, 0, num_draws=1),
        lambda: confidently_correct(model, images, torch.tensor([0, 1])),
    ]
    for call in callers:
        with pytest.raises(BadInputError) as info:
            call()
        message = str(info.value)
        assert message.startswith("`model`: expected a classifier returning ("), message
        assert re.search(r"received an output of shape \(\d+,\)\.$", message), message
