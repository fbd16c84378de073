"""The robust mean against an explicit float64 reference with the reference code's lower median."""

from __future__ import annotations

import pytest
import torch

from dave_lightning import aggregation
from dave_lightning.aggregation import lower_median, robust_mean
from tests.helpers import explicit_lower_median, reference_robust_mean


@pytest.mark.parametrize("count", [1, 2, 7, 50])
def test_lower_median_is_the_explicit_lower_median_and_torch_median(count: int) -> None:
    values = torch.randn(count, 5, 3, dtype=torch.float64)
    expected = torch.tensor(
        [[explicit_lower_median(values[:, i, j].tolist()) for j in range(3)] for i in range(5)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(lower_median(values, 0), expected, rtol=0, atol=0)
    torch.testing.assert_close(lower_median(values, 0), values.median(dim=0).values)


def test_even_count_takes_the_lower_middle_value_for_median_and_mad() -> None:
    """By hand: [0, 1, 2, 5] has lower median 1 (midpoint 1.5) and deviations [1, 0, 1, 4] with
    lower MAD 1, threshold 2.5·1.4826 = 3.71: 5 is dropped and the mean of 0, 1, 2 is 1. With
    midpoints (median 1.5, MAD 1) 5 deviates by 3.5 and would stay in (mean 2)."""
    samples = torch.tensor([[0.0], [1.0], [2.0], [5.0]], dtype=torch.float64)
    assert float(robust_mean(samples, dim=0)) == 1.0
    assert float(robust_mean(samples.float(), dim=0)) == 1.0


def test_lower_median_of_a_non_cpu_style_dtype_uses_torch_median() -> None:
    values = torch.tensor([[4.0, 1.0, 3.0, 2.0], [2.0, 2.0, 7.0, 1.0]], dtype=torch.bfloat16)
    assert lower_median(values, dim=1).tolist() == [2.0, 2.0]


@pytest.mark.parametrize("count", [1, 2, 5, 16, 50])
def test_robust_mean_matches_the_reference(count: int) -> None:
    generator = torch.Generator().manual_seed(count)
    samples = torch.randn(count, 4, 6, generator=generator, dtype=torch.float64)
    samples[0] += 40.0  # an outlier sample
    samples[:, 0, 0] = 3.0  # all equal: MAD = 0, everything kept
    expected = reference_robust_mean(samples.numpy())
    torch.testing.assert_close(robust_mean(samples, dim=0), torch.from_numpy(expected))


def test_robust_mean_in_slices_equals_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregation, "_WORKSPACE_ELEMENTS", 7 * 5)  # 5 rows of 7 samples at once
    samples = torch.randn(7, 4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    samples[2] -= 30.0
    expected = reference_robust_mean(samples.numpy())
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
    expected = reference_robust_mean(samples.numpy())
    torch.testing.assert_close(robust_mean(samples, dim=0), torch.from_numpy(expected))


@pytest.mark.parametrize("count", [2, 9, 10])
def test_the_torch_path_of_other_devices_matches_the_reference(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """GPUs reduce with ``torch.median``; the same code runs here with NumPy switched off."""
    monkeypatch.setattr(aggregation, "_on_numpy", lambda values: False)
    generator = torch.Generator().manual_seed(200 + count)
    samples = torch.randint(-3, 4, (count, 300), generator=generator).double()
    samples[0, :50] += 40.0
    expected = reference_robust_mean(samples.numpy())
    torch.testing.assert_close(robust_mean(samples, dim=0), torch.from_numpy(expected))


def test_float32_samples_give_float32_means() -> None:
    samples = torch.randn(10, 7)
    assert robust_mean(samples, dim=0).dtype == torch.float32
