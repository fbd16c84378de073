"""The class contract, plotting, devices and the package's import layering."""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib
import pytest
import torch

import dave_lightning.metrics as metrics_package
from dave_lightning.metrics import EnergyPointingGame, GridPointingGame, PixelDeletion
from tests.metrics.helpers import PixelLinear

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PACKAGE_DIR = Path(metrics_package.__file__).parent
ALLOWED_TOP_LEVEL = {
    "__future__",
    "collections",
    "contextlib",
    "dataclasses",
    "math",
    "typing",
    "warnings",
    "torch",
    "torchmetrics",
    "dave_lightning",
}


def imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in a file."""
    found = []
    top_level = {id(node) for node in tree.body}  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", id(node) in top_level))
    return found


def test_the_metrics_import_only_torch_torchmetrics_and_the_shared_helpers():
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        for module, top_level in imports(ast.parse(path.read_text())):
            root = module.split(".")[0]
            if root == "matplotlib":
                assert not top_level, f"{path.name}: matplotlib must be imported lazily"
                continue
            assert root in ALLOWED_TOP_LEVEL, f"{path.name} imports {module}"
            if root == "dave_lightning":
                shared = module in ("dave_lightning.errors", "dave_lightning._common")
                assert shared or module.startswith("dave_lightning.metrics"), (
                    f"{path.name} imports {module}"
                )


@pytest.mark.parametrize(
    ("metric", "states"),
    [
        (
            GridPointingGame(),
            {"score_sum": "sum", "count": "sum", "num_nan": "sum", "scores": "cat"},
        ),
        (
            EnergyPointingGame(),
            {
                "score_sum": "sum",
                "count": "sum",
                "num_nan": "sum",
                "num_empty": "sum",
                "scores": "cat",
            },
        ),
        (
            PixelDeletion(),
            {"curve_sum": "sum", "count": "sum", "num_nan": "sum", "auc_scores": "cat"},
        ),
    ],
)
def test_class_contract(metric, states):
    assert metric.is_differentiable is False
    assert metric.full_state_update is False
    reductions = {
        name: fn.__name__.removeprefix("dim_zero_") for name, fn in metric._reductions.items()
    }
    assert reductions == states
    if not isinstance(metric, PixelDeletion):
        assert metric.higher_is_better is True
        assert (metric.plot_lower_bound, metric.plot_upper_bound) == (0.0, 1.0)


def filled_metrics(device: str = "cpu"):
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 4, 4, generator=generator).to(device)
    grid = GridPointingGame().to(device)
    grid.update(maps, (torch.arange(6) % 4).to(device))
    energy = EnergyPointingGame().to(device)
    energy.update(maps, torch.tensor([[[0, 0, 2, 3]]] * 6, device=device))
    model = PixelLinear(torch.randn(3, 1, 4, 4, generator=generator), torch.zeros(3)).to(device)
    images = torch.randn(6, 1, 4, 4, generator=generator).to(device)
    deletion = PixelDeletion(steps=4, blur_kernel_size=3).to(device)
    deletion.update(model, images, maps, torch.arange(6, device=device) % 3)
    return grid, energy, deletion


def test_pointing_game_plots_show_the_distribution():
    grid, energy, _ = filled_metrics()
    fig, ax = grid.plot()
    heights = [patch.get_height() for patch in ax.patches]
    assert sum(heights) == 6
    assert len(heights) == 20
    assert 0.25 in [line.get_xdata()[0] for line in ax.get_lines()]  # chance level
    assert "GridPointingGame" in ax.get_title()
    assert "(n=6)" in ax.get_title()
    plt.close(fig)
    fig, ax = energy.plot(energy.per_sample_scores()[:3])
    assert sum(patch.get_height() for patch in ax.patches) == 3
    plt.close(fig)
    fig, ax = grid.plot([grid.compute(), grid.compute() / 2])  # values over steps
    assert len(ax.get_lines()[0].get_ydata()) == 2
    plt.close(fig)


@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("most_relevant_first", "lower is better"),
        ("least_relevant_first", "higher is better"),
        ("random", "reference line"),
    ],
)
def test_deletion_plot_draws_the_curve_and_says_which_way_is_better(order, words):
    metric = PixelDeletion(steps=3, order=order, replacement="zero")
    model = PixelLinear(torch.randn(2, 1, 3, 3), torch.zeros(2))
    metric.update(model, torch.randn(2, 1, 3, 3), torch.randn(2, 3, 3), 0)
    result = metric.compute()
    fig, ax = metric.plot()
    (line,) = ax.get_lines()
    assert line.get_ydata().tolist() == pytest.approx(result["curve"].tolist())
    assert line.get_xdata().tolist() == pytest.approx(result["fractions"].tolist())
    assert words in ax.get_title()
    assert ax.get_ylim() == (0.0, 1.0)
    plt.close(fig)
    fig, ax = metric.plot([result, result])
    assert len(ax.get_lines()) == 2
    plt.close(fig)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("device", ["cuda"])
def test_results_do_not_depend_on_the_device(device):
    reference = [m.compute() for m in filled_metrics("cpu")]
    on_device = [m.compute() for m in filled_metrics(device)]
    torch.testing.assert_close(on_device[0].cpu(), reference[0])
    torch.testing.assert_close(on_device[1].cpu(), reference[1])
    for key in ("auc", "curve", "fractions"):
        torch.testing.assert_close(on_device[2][key].cpu(), reference[2][key])
