"""The demo's printed table, its ``summary.png`` and, with ``--spurious``, a plain verdict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dave_lightning.demo.run import DemoResult
from dave_lightning.viz import REFERENCE, metric_history_figure

__all__ = ["EpochPrinter", "format_row", "format_table", "save_summary", "table_header", "verdict"]

PREFIX = "explain"
_METRICS = {
    "grid_pg": ("GridPG", "higher is better"),
    "energy_pg": ("EnergyPG", "higher is better"),
    "deletion_auc": (
        "DelAUC",
        "lower is better (most relevant pixels removed first; AUC of score / unperturbed score, "
        "1 = no drop; 'random' removes pixels in random order)",
    ),
}
_SCORE_LIMITS = (0.0, 1.05)


def _rows(result: DemoResult) -> list[dict[str, float]]:
    """Accuracy and explanation scores merged per epoch."""
    by_epoch: dict[int, dict[str, float]] = {}
    for row in [*result.accuracy, *result.history]:
        by_epoch.setdefault(int(row["epoch"]), {}).update(row)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _methods(result: DemoResult, metric: str) -> list[str]:
    """The methods of a metric's columns; deletion adds the random-order reference."""
    methods = list(result.config.methods)
    return [*methods, REFERENCE] if metric == "deletion_auc" else methods


def _columns(result: DemoResult) -> list[tuple[str, str]]:
    columns = [("train acc", "train_acc"), ("val acc", "val_acc")]
    for metric, (short, _) in _METRICS.items():
        for method in _methods(result, metric):
            name = "random" if method == REFERENCE else method
            columns.append((f"{short} {name}", f"{PREFIX}/{method}/{metric}"))
    return columns


def table_header(result: DemoResult) -> str:
    """The table's two header lines (column titles and rules)."""
    columns = _columns(result)
    return "\n".join(
        [
            " | ".join(["epoch", *(title for title, _ in columns)]),
            " | ".join(["-----", *("-" * len(title) for title, _ in columns)]),
        ]
    )


def format_row(result: DemoResult, row: dict[str, float]) -> str:
    """One epoch's line of the table."""
    cells = [f"{int(row['epoch']):>5}"]
    for title, key in _columns(result):
        value = row.get(key)
        cells.append(("-" if value is None else f"{value:.3f}").rjust(len(title)))
    return " | ".join(cells)


def _legend() -> str:
    return "(" + "; ".join(f"{short}: {direction}" for short, direction in _METRICS.values()) + ")"


def format_table(result: DemoResult) -> str:
    """One row per epoch: accuracy, then GridPG, EnergyPG and deletion AUC per method.

    The deletion AUC is normalised by the unperturbed score (see
    :class:`~dave_lightning.metrics.PixelDeletion`), with the random-order reference beside it.

    Example:
        >>> from dave_lightning.demo.run import DemoConfig, DemoResult
        >>> result = DemoResult(DemoConfig(methods=("dave",)),
        ...                     accuracy=[{"epoch": 0.0, "train_acc": 0.5, "val_acc": 0.25}],
        ...                     history=[{"epoch": 0.0, "explain/dave/energy_pg": 0.3,
        ...                               "explain/random_order/deletion_auc": 0.6}])
        >>> print(format_table(result).splitlines()[2])
            0 |     0.500 |   0.250 |           - |         0.300 |           - |         0.600
    """
    lines = [table_header(result), *(format_row(result, row) for row in _rows(result))]
    return "\n".join(lines) + "\n" + _legend()


class EpochPrinter:
    """Prints the table as training goes: the header first, then each epoch's row when done.

    Args:
        say: Where lines go (e.g. ``print``, or the progress bar's ``print``).
    """

    def __init__(self) -> None:
        self._printed: set[int] = set()

    def __call__(self, result: DemoResult, say: Callable[[str], None]) -> None:
        """Print the rows of epochs not printed yet (the header before the first)."""
        for row in _rows(result):
            epoch = int(row["epoch"])
            if epoch in self._printed:
                continue
            if not self._printed:
                say("Explanation quality, one row per epoch as training goes:\n")
                say(table_header(result))
            self._printed.add(epoch)
            say(format_row(result, row))


def save_summary(result: DemoResult, path: Path) -> Path:
    """``summary.png``: each metric over epochs, one line per method, and the accuracies.

    The deletion panel has the random-order reference (dashed grey); every panel spans [0, 1].
    """
    rows = _rows(result)
    history: dict[str, dict[str, list[tuple[int, float]]]] = {
        "accuracy": {
            name: [(int(r["epoch"]), r[key]) for r in rows if key in r]
            for name, key in (("train", "train_acc"), ("validation", "val_acc"))
        }
    }
    titles = {"accuracy": "accuracy (higher is better)"}
    for metric, (short, direction) in _METRICS.items():
        history[metric] = {
            method: [
                (int(r["epoch"]), r[f"{PREFIX}/{method}/{metric}"])
                for r in rows
                if f"{PREFIX}/{method}/{metric}" in r
            ]
            for method in _methods(result, metric)
        }
        titles[metric] = f"{short} ({direction.split(' (')[0]})"
    titles["deletion_auc"] = "DelAUC, score / unperturbed (lower is better)"
    limits = {metric: _SCORE_LIMITS for metric in history}
    figure = metric_history_figure(history, titles, limits)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _series(result: DemoResult, key: str) -> list[tuple[int, float]]:
    return [(int(row["epoch"]), row[key]) for row in _rows(result) if key in row]


def _last(result: DemoResult, key: str) -> float | None:
    values = _series(result, key)
    return values[-1][1] if values else None


def _densities(result: DemoResult, energy: float, cue: float) -> tuple[float, float]:
    """How much more attribution than a uniform map gets, on the objects and on the mark."""
    return energy / max(result.object_share, 1e-9), cue / max(result.cue_area, 1e-9)


def _course(result: DemoResult) -> list[str]:
    """DAVE's EnergyPG over training: first, peak and last epoch (two epochs or more)."""
    values = _series(result, f"{PREFIX}/dave/energy_pg")
    if len(values) < 2:
        return []
    (first_epoch, first), (last_epoch, last) = values[0], values[-1]
    peak_epoch, peak = max(values, key=lambda item: item[1])
    return [
        f"Over training DAVE's EnergyPG went from {first:.2f} (epoch {first_epoch}) to "
        f"{last:.2f} (epoch {last_epoch}); its peak was {peak:.2f} (epoch {peak_epoch})."
    ]


def _conclusion(result: DemoResult, accuracy: float, on_objects: float, on_mark: float) -> str:
    clean = result.clean_accuracy or 0.0
    held, shortcut = accuracy >= 0.8, clean < accuracy - 0.3
    if held and shortcut and on_mark > on_objects:
        return (
            "Verdict: accuracy held, but the evidence sits on the mark rather than the object "
            f"(per pixel, {on_mark:.1f}x a uniform map against {on_objects:.1f}x): the model "
            "answers from a shortcut, which the monitor reveals."
        )
    if held and shortcut:
        return (
            "Verdict: accuracy held but the model fails without the mark, and DAVE's maps did not "
            "single the mark out; compare the EnergyPG curve with a run without --spurious."
        )
    if held:
        return (
            f"Verdict: accuracy held on images without the mark too ({clean:.2f}): the model did "
            "not take the shortcut."
        )
    return "Verdict: the model did not reach good accuracy; train longer to judge."


def verdict(result: DemoResult) -> list[str]:
    """Plain sentences: did accuracy hold while the evidence moved to the mark?

    Everything is measured at the last epoch: validation accuracy (images with the mark), the
    accuracy on images without it, and how densely DAVE's maps cover the objects and the mark
    compared with a uniform map; a last sentence gives DAVE's EnergyPG over the epochs.
    """
    accuracy = _last(result, "val_acc")
    energy = _last(result, f"{PREFIX}/dave/energy_pg")
    cue = result.cue_share.get("dave")
    if accuracy is None or energy is None or cue is None or result.clean_accuracy is None:
        return ["Not enough measurements for a verdict (run more epochs with DAVE)."]
    chance = 1.0 / len(result.class_names) if result.class_names else 0.0
    on_objects, on_mark = _densities(result, energy, cue)
    lines = [
        f"Accuracy {'held' if accuracy >= 0.8 else 'did not hold'}: {accuracy:.2f} on validation "
        "images, which carry the same class-coloured mark as the training images; "
        f"{result.clean_accuracy:.2f} on images without the mark (chance {chance:.2f}).",
        f"DAVE's EnergyPG is {energy:.2f}: the objects cover {result.object_share:.0%} of an "
        f"image and hold {energy:.0%} of its positive attribution ({on_objects:.1f}x a uniform "
        f"map); the mark covers {result.cue_area:.1%} and holds {cue:.0%} ({on_mark:.1f}x).",
    ]
    others = [f"{m} {share:.0%}" for m, share in result.cue_share.items() if m != "dave"]
    if others:
        lines.append(
            "Share of positive attribution on the mark for the other methods: "
            + ", ".join(others)
            + "."
        )
    return [*lines, _conclusion(result, accuracy, on_objects, on_mark), *_course(result)]
