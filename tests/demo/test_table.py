"""The demo's table: printed epoch by epoch, with the random-order deletion reference."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from dave_lightning.demo.report import EpochPrinter, format_table, save_summary
from dave_lightning.demo.run import DemoConfig, DemoResult


def _row(epoch: int) -> dict[str, float]:
    return {
        "epoch": float(epoch),
        "explain/dave/deletion_auc": 0.4,
        "explain/gradient/deletion_auc": 0.5,
        "explain/random_order/deletion_auc": 0.6,
    }


def test_rows_are_printed_as_epochs_end() -> None:
    result = DemoResult(DemoConfig())
    printed: list[str] = []
    printer = EpochPrinter()
    result.history = [_row(0)]
    printer(result, printed.append)
    assert len(printed) == 3  # a title, the header, epoch 0's row
    assert printed[1].splitlines()[0].endswith("DelAUC dave | DelAUC gradient | DelAUC random")
    assert printed[2].startswith("    0 |")
    assert printed[2].endswith("0.600")
    result.history = [_row(0), _row(1)]
    printer(result, printed.append)
    assert len(printed) == 4  # only the new row
    assert printed[3].startswith("    1 |")


def test_the_table_and_summary_carry_the_random_order_reference(tmp_path: Path) -> None:
    result = DemoResult(DemoConfig(), history=[_row(0), _row(1)])
    table = format_table(result)
    assert "DelAUC random" in table
    assert "score / unperturbed score" in table.splitlines()[-1]
    path = save_summary(result, tmp_path / "summary.png")
    assert Image.open(path).size[0] > 400
