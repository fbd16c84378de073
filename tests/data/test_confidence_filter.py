"""confidently_correct and the model filter of make_grids, with a model whose outputs we write."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dave_lightning.data import confidently_correct, make_grids
from dave_lightning.errors import BadInputError

NUM_CLASSES = 4


class PixelLogits(nn.Module):
    """Returns the first ``NUM_CLASSES`` pixels of channel 0 as logits, so a test sets them."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.dropout = nn.Dropout(0.5)  # must be off (eval mode) or the logits would change
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append((images.shape[0], self.training, torch.is_grad_enabled()))
        return self.dropout(images[:, 0, 0, :NUM_CLASSES] * self.scale)


def images_with_logits(logits: list[list[float]]) -> torch.Tensor:
    images = torch.zeros(len(logits), 3, 8, 8)
    images[:, 0, 0, :NUM_CLASSES] = torch.tensor(logits)
    return images


def reference_keep(logits: list[list[float]], labels: list[int], threshold: float) -> list[bool]:
    keep = []
    for row, label in zip(logits, labels, strict=True):
        total = sum(math.exp(value) for value in row)
        probability = math.exp(row[label]) / total
        keep.append(max(range(len(row)), key=row.__getitem__) == label and probability >= threshold)
    return keep


LOGITS = [
    [5.0, 0.0, 0.0, 0.0],  # class 0, p = 0.98
    [0.0, 2.0, 0.0, 0.0],  # class 1, p = 0.71
    [0.0, 0.0, 9.0, 0.0],  # class 2, p = 0.9996
    [0.0, 0.0, 0.0, 1.0],  # class 3, p = 0.48
    [4.0, 0.0, 0.0, 0.0],  # predicts 0: wrong for label 1
    [0.0, 6.0, 0.0, 0.0],  # class 1, p = 0.993
    [0.0, 0.0, 0.0, 7.0],  # class 3, p = 0.997
    [0.0, 0.0, 3.0, 0.0],  # class 2, p = 0.87
]
LABELS = [0, 1, 2, 3, 1, 1, 3, 2]


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_keeps_exactly_the_correct_and_confident_images(threshold: float) -> None:
    model = PixelLogits()
    keep = confidently_correct(
        model, images_with_logits(LOGITS), torch.tensor(LABELS), min_confidence=threshold
    )
    assert keep.dtype == torch.bool
    assert keep.tolist() == reference_keep(LOGITS, LABELS, threshold)


def test_the_threshold_is_inclusive() -> None:
    tied = [[0.0, 0.0, 0.0, 0.0]]  # argmax is the first class, with probability exactly 0.25
    images, labels = images_with_logits(tied), torch.tensor([0])
    assert confidently_correct(PixelLogits(), images, labels, min_confidence=0.25).item()
    assert not confidently_correct(PixelLogits(), images, labels, min_confidence=0.26).item()


def test_runs_in_eval_mode_without_grad_in_batches_and_restores_modes() -> None:
    model = PixelLogits()
    model.train()
    model.dropout.eval()  # a mixed state must come back as it was
    confidently_correct(model, images_with_logits(LOGITS), torch.tensor(LABELS), batch_size=3)
    assert model.calls == [(3, False, False), (3, False, False), (2, False, False)]
    assert model.training
    assert not model.dropout.training


def test_restores_modes_when_the_model_raises() -> None:
    class Failing(PixelLogits):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = Failing()
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        confidently_correct(model, images_with_logits(LOGITS), torch.tensor(LABELS))
    assert model.training
    assert model.dropout.training


def test_grids_use_only_images_that_pass_the_filter() -> None:
    model = PixelLogits()
    images = images_with_logits(LOGITS * 2)
    labels = torch.tensor(LABELS * 2)
    allowed = {i for i, ok in enumerate(reference_keep(LOGITS * 2, LABELS * 2, 0.9)) if ok}
    grids = make_grids(images, labels, model=model, min_confidence=0.9, batch_size=5)
    assert grids.num_eligible == len(allowed) == 8
    assert len(grids) == 2  # classes 0, 1, 2, 3 pass twice each
    assert set(grids.source_indices.flatten().tolist()) <= allowed
    correct_only = make_grids(images, labels, model=model)
    assert correct_only.num_eligible == 14  # the two wrongly classified images drop out


def test_a_strict_filter_can_leave_too_few_classes() -> None:
    model = PixelLogits()
    with pytest.warns(UserWarning, match="no 2x2 grid can be formed"):
        grids = make_grids(
            images_with_logits(LOGITS), torch.tensor(LABELS), model=model, min_confidence=0.995
        )
    assert len(grids) == 0
    assert grids.num_eligible == 2
    assert grids.reason == (
        "no 2x2 grid can be formed: it needs 4 distinct classes, and the 2 of 8 images "
        "that passed the model filter span 2"
    )


def test_rejects_bad_outputs_labels_and_thresholds() -> None:
    images, labels = images_with_logits(LOGITS), torch.tensor(LABELS)
    with pytest.raises(BadInputError, match=r"`model`: expected a classifier returning \(8, "):
        confidently_correct(nn.Flatten(0), images, labels)
    with pytest.raises(BadInputError, match=r"`labels`: expected class indices below the model"):
        confidently_correct(PixelLogits(), images, labels + 1)
    with pytest.raises(BadInputError, match=r"`min_confidence`: expected a number in \[0, 1\]"):
        make_grids(images, labels, model=PixelLogits(), min_confidence=1.5)
    with pytest.raises(BadInputError, match=r"`batch_size`: expected an integer >= 1"):
        confidently_correct(PixelLogits(), images, labels, batch_size=0)


def test_empty_input_gives_an_empty_mask() -> None:
    keep = confidently_correct(
        PixelLogits(), torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)
    )
    assert keep.shape == (0,)
    assert keep.dtype == torch.bool
