"""Plotting helpers for the metric classes (private). Matplotlib is imported lazily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

__all__ = ["direction_label", "plot_curves", "plot_distribution"]


def direction_label(higher_is_better: bool | None) -> str:
    """``"higher is better"``, ``"lower is better"`` or ``"reference"`` for charts."""
    if higher_is_better is None:
        return "reference"
    return "higher is better" if higher_is_better else "lower is better"


def _axes(ax: Any) -> tuple[Any, Any]:
    if ax is not None:
        return ax.get_figure(), ax
    import matplotlib.pyplot as plt

    return plt.subplots()


def plot_distribution(
    scores: Tensor,
    ax: Any,
    title: str,
    *,
    reference: float | None = None,
    reference_label: str = "",
    bounds: tuple[float, float] = (0.0, 1.0),
    bins: int = 20,
    higher_is_better: bool = True,
) -> tuple[Any, Any]:
    """Histogram of per-sample scores with the mean (and an optional reference) marked."""
    fig, ax = _axes(ax)
    values = scores.detach().double().cpu().numpy()
    ax.hist(values, bins=bins, range=bounds, color="tab:blue", alpha=0.8)
    if len(values):
        ax.axvline(float(values.mean()), color="black", label=f"mean {values.mean():.3f}")
    if reference is not None:
        ax.axvline(reference, color="tab:red", linestyle="--", label=reference_label)
    ax.set_xlim(*bounds)
    ax.set_xlabel(f"score ({direction_label(higher_is_better)})")
    ax.set_ylabel("samples")
    ax.set_title(f"{title} (n={len(values)})")
    ax.legend(loc="upper left")
    return fig, ax


def plot_curves(
    results: Sequence[Mapping[str, Tensor]],
    ax: Any,
    title: str,
    ylabel: str,
    bounds: tuple[float | None, float | None],
) -> tuple[Any, Any]:
    """One line per ``{"fractions", "curve", "auc"}`` result, labelled with its index and AUC."""
    fig, ax = _axes(ax)
    for index, result in enumerate(results):
        label = f"AUC {float(result['auc']):.3f}"
        if len(results) > 1:
            label = f"{index}: {label}"
        fractions = result["fractions"].detach().double().cpu().numpy()
        curve = result["curve"].detach().double().cpu().numpy()
        ax.plot(fractions, curve, marker=".", label=label)
    ax.set_ylim(*bounds)
    ax.set_xlabel("fraction of pixels removed")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best")
    return fig, ax
