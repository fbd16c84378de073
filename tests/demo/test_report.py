"""The ``--spurious`` verdict on hand-built results: every branch, and the README's example."""

from __future__ import annotations

import re
from pathlib import Path

from dave_lightning.demo.report import verdict
from dave_lightning.demo.run import DemoConfig, DemoResult

README = Path(__file__).resolve().parents[2] / "README.md"
CLASSES = ("disc", "square", "triangle", "cross", "ring", "bar")


def result(
    val_acc: float | None = 1.0,
    clean: float | None = 0.17,
    energy: float = 0.16,
    object_share: float = 0.09,
    cue: float = 0.13,
    cue_area: float = 0.0089,
    epochs: int = 1,
) -> DemoResult:
    """A finished ``--spurious`` run; ``energy`` is DAVE's EnergyPG at the last epoch."""
    accuracy = [{"epoch": float(e), "val_acc": val_acc or 0.0} for e in range(epochs)]
    history = [
        {"epoch": float(e), "explain/dave/energy_pg": energy + 0.1 * (epochs - 1 - e)}
        for e in range(epochs)
    ]
    return DemoResult(
        DemoConfig(spurious=True),
        accuracy=accuracy if val_acc is not None else [],
        history=history,
        clean_accuracy=clean,
        cue_share={"dave": cue, "gradient": 0.05},
        object_share=object_share,
        cue_area=cue_area,
        class_names=CLASSES,
    )


def verdict_line(lines: list[str]) -> str:
    (line,) = [line for line in lines if line.startswith("Verdict:")]
    return line


def test_accuracy_held_and_the_evidence_sits_on_the_mark() -> None:
    lines = verdict(result())
    assert lines[0] == (
        "Accuracy held: 1.00 on validation images, which carry the same class-coloured mark as "
        "the training images; 0.17 on images without the mark (chance 0.17)."
    )
    assert (
        "the objects cover 9% of an image and hold 16% of its positive attribution (1.8x"
        in (lines[1])
    )
    assert "the mark covers 0.9% and holds 13% (14.6x)" in lines[1]
    assert "gradient 5%" in lines[2]
    assert verdict_line(lines) == (
        "Verdict: accuracy held, but the evidence sits on the mark rather than the object "
        "(per pixel, 14.6x a uniform map against 1.8x): the model answers from a shortcut, "
        "which the monitor reveals."
    )


def test_a_shortcut_the_maps_do_not_single_out() -> None:
    line = verdict_line(verdict(result(energy=0.6, cue=0.01)))  # 6.7x objects, 1.1x mark
    assert line.startswith("Verdict: accuracy held but the model fails without the mark")
    assert "did not single the mark out" in line


def test_no_shortcut_when_accuracy_holds_without_the_mark() -> None:
    line = verdict_line(verdict(result(clean=0.9, energy=0.1, cue=0.5)))
    assert line == (
        "Verdict: accuracy held on images without the mark too (0.90): the model did not take "
        "the shortcut."
    )


def test_low_accuracy_cannot_be_judged() -> None:
    lines = verdict(result(val_acc=0.5))
    assert lines[0].startswith("Accuracy did not hold: 0.50")
    assert verdict_line(lines) == (
        "Verdict: the model did not reach good accuracy; train longer to judge."
    )


def test_missing_measurements_give_no_verdict() -> None:
    assert verdict(result(clean=None)) == [
        "Not enough measurements for a verdict (run more epochs with DAVE)."
    ]
    assert verdict(result(val_acc=None))[0].startswith("Not enough measurements")


def test_the_energy_pg_course_over_epochs_is_stated() -> None:
    lines = verdict(result(epochs=3))  # EnergyPG 0.36, 0.26, 0.16
    assert lines[-1] == (
        "Over training DAVE's EnergyPG went from 0.36 (epoch 0) to 0.16 (epoch 2); its peak was "
        "0.36 (epoch 0)."
    )
    assert not any(line.startswith("Over training") for line in verdict(result(epochs=1)))


def test_the_readme_example_is_what_the_verdict_prints() -> None:
    text = " ".join(README.read_text().split())
    quoted = re.search(r"for example: \*\"(.*?)\"\*", text)
    assert quoted is not None
    # the figures of the README's run (demo --spurious, augmented training, 2 CPU cores)
    readme_run = result(clean=0.46, energy=0.104, object_share=0.087, cue=0.76, cue_area=0.0088)
    printed = " ".join(verdict(readme_run))
    for sentence in re.split(r"(?<=[.)]) (?=Verdict)", quoted.group(1)):
        assert sentence.replace(" %", "%") in printed, sentence
