"""The robust mean against an explicit numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dave_lightning import aggregation
from dave_lightning.aggregation import median, robust_mean


def _reference_robust_mean(samples: np.ndarray) -> np.ndarray:
    """Per element: drop samples farther than 2.5·(1.4826·MAD + 1e-8) from the median, average."""
    out = np.empty(samples.shape[1:])
    for index in np.ndindex(*samples.shape[1:]):
        values = samples[(slice(None), *index)]
        center = np.median(values)
        mad = np.median(np.abs(values - center))
        kept = values[np.abs(values - center) <= 2.5 * (1.4826 * mad + 1e-8)]
        out[index] = kept.mean()
    return out


@pytest.mark.parametrize("count", [1, 2, 7, 50])
def test_median_is_the_statistical_median(count: int) -> None:
    values = torch.randn(count, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(
        median(values, 0), torch.from_numpy(np.median(values.numpy(), axis=0))
    )


@pytest.mark.parametrize("count", [1, 2, 5, 50])
def test_robust_mean_matches_the_reference(count: int) -> None:
    generator = torch.Generator().manual_seed(count)
    samples = torch.randn(count, 4, 6, generator=generator, dtype=torch.float64)
    samples[0] += 40.0  # an outlier sample
    samples[:, 0, 0] = 3.0  # all equal: MAD = 0, everything kept
    expected = _reference_robust_mean(samples.numpy())
    torch.testing.assert_close(robust_mean(samples, dim=0), torch.from_numpy(expected))


def test_robust_mean_in_slices_equals_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregation, "_WORKSPACE_ELEMENTS", 7 * 5)  # 5 rows of 7 samples at once
    samples = torch.randn(7, 4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    samples[2] -= 30.0
    expected = _reference_robust_mean(samples.numpy())
    torch.testing.assert_close(robust_mean(samples, dim=0), torch.from_numpy(expected))


def test_robust_mean_drops_outliers_that_the_mean_keeps() -> None:
    samples = torch.tensor([[1.0], [1.2], [0.8], [1.0], [30.0]])
    assert float(robust_mean(samples, dim=0)) == pytest.approx(1.0)
    assert float(samples.mean(dim=0)) > 5


def test_robust_mean_reduces_any_dimension() -> None:
    samples = torch.randn(3, 9, 4, dtype=torch.float64)
    torch.testing.assert_close(
        robust_mean(samples, dim=1), robust_mean(samples.transpose(0, 1), dim=0)
    )


@pytest.mark.parametrize("count", [1, 2, 3, 4, 9, 10, 50, 51])
def test_robust_mean_with_heavy_ties_matches_the_reference(count: int) -> None:
    """Integer-valued samples: many equal values and equal deviations on both sides."""
    generator = torch.Generator().manual_seed(100 + count)
    samples = torch.randint(-3, 4, (count, 300), generator=generator).double()
    samples[:, :20] *= 7.0  # wider spreads, exact ties at the window's ends
    expected = _reference_robust_mean(samples.numpy())
    torch.testing.assert_close(robust_mean(samples, dim=0), torch.from_numpy(expected))
