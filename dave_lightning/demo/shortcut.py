"""After ``demo --spurious``: did the model learn the mark shortcut; do the maps say so?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dave_lightning.data import SyntheticShapes
from dave_lightning.demo.config import DemoConfig, DemoResult
from dave_lightning.metrics.functional import energy_pointing_game
from dave_lightning.registry import get_attributor

if TYPE_CHECKING:
    from dave_lightning.callbacks import AttributionMonitor

__all__ = ["measure_shortcut", "unmarked_test_set"]


@torch.no_grad()
def _accuracy(model: nn.Module, dataset: SyntheticShapes, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = torch.stack([item[0] for item in items]).to(next(model.parameters()).device)
        labels = torch.tensor([item[1] for item in items], device=images.device)
        correct += int((model(images).argmax(dim=1) == labels).sum())
    return correct / len(dataset)


def _mean_area(boxes: list[torch.Tensor], image_size: int) -> float:
    """Mean share of the image covered by one box per image."""
    areas = [float((box[0, 2:] - box[0, :2]).prod()) for box in boxes if len(box)]
    return sum(areas) / max(1, len(areas)) / image_size**2


def unmarked_test_set(config: DemoConfig, like: SyntheticShapes) -> SyntheticShapes:
    """The test split without the mark, normalised like ``like`` (the validation split)."""
    return SyntheticShapes(
        "test",
        length=config.val_size,
        seed=config.seed,
        image_size=config.image_size,
        spurious=True,
        eval_cue="absent",
        cue_placement=like.cue_placement,
        mean=like.mean,
        std=like.std,
    )


def measure_shortcut(
    result: DemoResult, model: nn.Module, monitor: AttributionMonitor, val: SyntheticShapes
) -> None:
    """Fill ``result`` with the clean-image accuracy and each method's attribution on the mark.

    Clean images are the test split without the mark; the probe images (validation, mark
    coloured like the label) are re-attributed with the final model, and the share of each map's
    positive attribution inside the mark's box is measured (EnergyPG with the mark as the box).
    """
    config = result.config
    result.clean_accuracy = _accuracy(model, unmarked_test_set(config, val))
    probe = monitor.probe
    assert probe is not None
    samples = [val.sample(int(i)) for i in probe.indices]
    marks = [sample.cue_box for sample in samples]
    result.object_share = _mean_area([sample.box for sample in samples], config.image_size)
    result.cue_area = _mean_area(marks, config.image_size)
    device = next(model.parameters()).device
    images, labels = probe.images.to(device), probe.labels.to(device)
    for method in config.methods:
        attributor = get_attributor(method, model, **monitor.config.options_for(method))
        maps = attributor.attribute(images, labels, image_ids=probe.indices)
        result.cue_share[method] = float(energy_pointing_game(maps, marks).nanmean())
