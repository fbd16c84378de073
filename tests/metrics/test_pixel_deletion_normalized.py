"""Deletion normalised by the unperturbed score: the same ranking, any confidence, one number."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dave_lightning.errors import BadInputError
from dave_lightning.metrics import PixelDeletion
from dave_lightning.metrics.functional import deletion_auc, deletion_fractions, pixel_deletion


class _Tempered(nn.Module):
    """A fixed small classifier whose logits are divided by a temperature."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.rand(3, 3 * 8 * 8, generator=generator))
        self.temperature = temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.weight.T / self.temperature


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 8, 8, generator=generator) + 0.5  # positive logits
    maps = torch.rand(4, 8, 8, generator=generator)
    return images, maps, torch.tensor([0, 1, 2, 0])


def _auc(temperature: float, score: str, normalize: bool) -> float:
    images, maps, target = _inputs()
    metric = PixelDeletion(steps=8, replacement="zero", score=score, normalize=normalize)
    metric.update(_Tempered(temperature), images, maps, target)
    return float(metric.compute()["auc"])


@pytest.mark.parametrize("temperature", [0.25, 4.0])
def test_logit_scores_scaled_by_a_temperature_give_the_same_normalised_auc(
    temperature: float,
) -> None:
    assert _auc(temperature, "logit", normalize=True) == pytest.approx(
        _auc(1.0, "logit", normalize=True), rel=1e-5
    )
    # the old, unnormalised AUC follows the temperature exactly: 1/T
    assert _auc(temperature, "logit", normalize=False) == pytest.approx(
        _auc(1.0, "logit", normalize=False) / temperature, rel=1e-5
    )


def test_normalised_equals_a_float64_reference() -> None:
    images, maps, target = _inputs()
    model = _Tempered(1.0)
    _, curves = pixel_deletion(model, images, maps, target, steps=8, replacement="zero")
    mean = curves.double().mean(dim=0)
    ratio = (mean / mean[0]).numpy()
    x = deletion_fractions(8, dtype=torch.float64).numpy()
    expected = sum((ratio[i] + ratio[i + 1]) / 2 * (x[i + 1] - x[i]) for i in range(8))
    metric = PixelDeletion(steps=8, replacement="zero", normalize=True)
    metric.update(model, images, maps, target)
    result = metric.compute()
    assert float(result["auc"]) == pytest.approx(expected, rel=1e-5)
    assert float(result["curve"][0]) == pytest.approx(1.0)
    assert float(result["unperturbed_score"]) == pytest.approx(float(mean[0]), rel=1e-6)


def test_functional_normalisation_and_non_positive_scores() -> None:
    fractions = torch.tensor([0.0, 0.5, 1.0])
    curves = torch.tensor([[2.0, 1.0, 0.0], [-1.0, -2.0, -3.0]])
    got = deletion_auc(curves, fractions, normalize=True)
    assert got[0] == pytest.approx(0.5)
    assert torch.isnan(got[1])
    with pytest.raises(BadInputError, match="`normalize`"):
        PixelDeletion(normalize="yes")  # type: ignore[arg-type]


def test_the_monitor_normalises_its_deletion_metrics() -> None:
    from dave_lightning.callbacks._config import MonitorConfig
    from dave_lightning.callbacks._evaluation import Evaluation

    evaluation = Evaluation(MonitorConfig(), {"dave": None})  # type: ignore[dict-item]
    assert evaluation.reference is not None
    assert evaluation.reference.normalize
    assert evaluation.metrics["dave"]["deletion_auc"].normalize
