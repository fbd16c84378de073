"""DeletionOptions: checked once when built, then passed whole (never re-checked per update)."""

from __future__ import annotations

import pytest
import torch

from dave_lightning.errors import BadInputError
from dave_lightning.metrics import DeletionOptions, PixelDeletion
from dave_lightning.metrics.functional import pixel_deletion


def test_options_are_checked_once_not_at_every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = []
    original = DeletionOptions.__post_init__
    monkeypatch.setattr(
        DeletionOptions, "__post_init__", lambda self: checks.append(1) or original(self)
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    metric = PixelDeletion(steps=4, replacement="zero")
    for _ in range(3):
        metric.update(model, torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4), target=1)
    assert len(checks) == 1


def test_from_options_equals_the_keyword_form() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    images, maps = torch.rand(3, 1, 4, 4), torch.rand(3, 4, 4)
    options = DeletionOptions(steps=4, order="least_relevant_first", replacement="mean", seed=3)
    from_options = PixelDeletion.from_options(options, normalize=True)
    keywords = PixelDeletion(
        steps=4, order="least_relevant_first", replacement="mean", seed=3, normalize=True
    )
    assert from_options.options == keywords.options == options
    for metric in (from_options, keywords):
        metric.update(model, images, maps, target=2)
    torch.testing.assert_close(from_options.compute()["curve"], keywords.compute()["curve"])
    _, curves = pixel_deletion(
        model, images, maps, 2, steps=4, order="least_relevant_first", replacement="mean", seed=3
    )
    plain = PixelDeletion.from_options(options)
    plain.update(model, images, maps, target=2)
    torch.testing.assert_close(plain.compute()["curve"], curves.mean(dim=0))


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"steps": 0}, r"^`steps`: expected an integer >= 1"),
        ({"max_fraction": 0.0}, r"^`max_fraction`: expected a number in \(0, 1\]"),
        ({"order": "up"}, r"^`order`: expected one of"),
        ({"replacement": torch.zeros(1, dtype=torch.long)}, r"^`replacement`: expected a floating"),
        ({"score": "prob"}, r"^`score`: expected one of 'softmax', 'logit'"),
        ({"blur_kernel_size": 4}, r"^`blur_kernel_size`: expected an odd integer"),
        ({"blur_sigma": float("inf")}, r"^`blur_sigma`: expected a positive number"),
    ],
)
def test_bad_options_name_the_field(options: dict, pattern: str) -> None:
    with pytest.raises(BadInputError, match=pattern):
        DeletionOptions(**options)
