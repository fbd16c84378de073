"""The adapter every Captum-backed attributor builds on: one row per (image, target) pair.

Captum differentiates one scalar per model input, so several targets per image are expanded into
the batch: image ``b`` with targets ``(t_b1, ..., t_bK)`` becomes ``K`` rows, image-major. A row
costs one forward and one backward pass per model input it needs (one for a gradient, ``n_steps``
for Integrated Gradients, ``nt_samples`` for SmoothGrad), and those inputs are packed into passes
of at most ``max_batch_size``.

The function Captum differentiates is :meth:`RowAttributor._row_scores`: the model's raw logit of
each row's target, gathered and range-checked by :meth:`Attributor._target_scores`; the targets
travel as Captum's ``additional_forward_args``, which Captum expands alongside the inputs.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from dave_lightning.attributor import Attributor

__all__ = ["RowAttributor"]


class RowAttributor(Attributor):
    """An :class:`Attributor` computed row by row, one row per (image, target) pair.

    Subclasses implement :meth:`_attribute_rows`; this class lays out the rows, hands them over in
    groups of at most :meth:`_rows_per_call` and reassembles ``(B, K, C, H, W)``.
    """

    def _attribute(self, images: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        batch, count = targets.shape
        image_index = torch.arange(batch).repeat_interleave(count)
        row_targets = targets.reshape(-1)
        maps = []
        for rows in torch.arange(batch * count).split(self._rows_per_call(batch * count)):
            index = image_index[rows]
            maps.append(
                self._attribute_rows(
                    images[index.to(images.device)],
                    row_targets[rows.to(images.device)],
                    [image_ids[i] for i in index.tolist()],
                )
            )
        return torch.cat(maps).reshape(batch, count, *images.shape[1:])

    def _rows_per_call(self, total_rows: int) -> int:
        """How many rows one :meth:`_attribute_rows` call gets (default ``max_batch_size``)."""
        return self.max_batch_size

    @abstractmethod
    def _attribute_rows(self, inputs: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        """``(n, C, H, W)`` maps of ``n`` rows: ``inputs`` ``(n, C, H, W)``, ``targets`` ``(n,)``.

        ``image_ids`` holds each row's image id (the key of its random stream).
        """

    def _row_scores(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """The ``(n,)`` raw logits ``model(inputs)[i, targets[i]]``: what Captum differentiates."""
        return self._target_scores(self.model(inputs), targets[:, None])[:, 0]

    @staticmethod
    def _leaf(inputs: Tensor) -> Tensor:
        """A fresh leaf copy of ``inputs`` that requires grad (Captum then leaves it as it is)."""
        return inputs.detach().clone().requires_grad_(True)
