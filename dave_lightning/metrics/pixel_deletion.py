"""PixelDeletion: deletion curves and their AUC as a torchmetrics metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from dave_lightning.errors import BadInputError
from dave_lightning.metrics._non_finite import warn_non_finite
from dave_lightning.metrics._plot import direction_label, plot_curves
from dave_lightning.metrics.functional.deletion_auc import (
    deletion_auc,
    deletion_fractions,
    normalize_curves,
)
from dave_lightning.metrics.functional.pixel_deletion import (
    DeletionOptions,
    DeletionOrder,
    DeletionScore,
    Replacement,
    _pixel_deletion_update,
)

__all__ = ["PixelDeletion"]

_HIGHER_IS_BETTER: dict[str, bool | None] = {
    "most_relevant_first": False,
    "least_relevant_first": True,
    "random": None,
}


class PixelDeletion(Metric):
    """Mean deletion curve and its AUC; the model is passed to ``update``, never stored.

    Delegates to :func:`~dave_lightning.metrics.functional.pixel_deletion`, whose documentation
    gives the protocol, how to reproduce the paper's setting (``steps=128, max_fraction=0.9,
    order="least_relevant_first"``) and the choices made. ``compute()`` returns
    ``{"auc", "curve", "fractions"}``: the AUC of the mean curve (which equals the mean per-sample
    AUC), the mean ``(steps + 1,)`` curve and its fraction axis.

    With ``normalize=True`` the mean curve is divided by its first point, the mean unperturbed
    score of the images, before its AUC is taken: ``compute()`` then returns the curve of
    ``score(t) / score(0)`` (1 at ``t = 0``), its AUC and ``"unperturbed_score"``. This is the
    right setting for comparing runs or epochs: without it the AUC of a ranking rises as the model
    grows confident (the whole curve is higher), so "lower is better" would read as "the
    explanations got worse" while only the confidence changed. Normalised, the AUC is the share
    of the unperturbed score left on average over the deletion, a number in [0, 1] for
    ``order="most_relevant_first"`` that is unchanged when every score is multiplied by one factor
    (exactly so for logits scaled by a temperature). The normalisation is a ratio of means (mean
    curve over mean ``score(0)``), so every method scored on the same images shares the
    denominator and their order is the unnormalised order. :meth:`per_sample_auc` stays
    unnormalised. The normalised AUC is NaN when the mean unperturbed score is not positive
    (possible with ``score="logit"``).

    Whether a higher AUC is better depends on ``order``, so :attr:`higher_is_better` is set per
    instance: ``False`` for ``"most_relevant_first"`` (a good map makes the score drop fast),
    ``True`` for ``"least_relevant_first"`` (the paper: the curve should stay high), ``None`` for
    the ``"random"`` reference line. Plot bounds are [0, 1] for ``score="softmax"``, open for
    ``"logit"``.

    States (all synchronised across processes): ``curve_sum`` ``(steps + 1,)`` and ``count``
    (sums); ``num_nan`` (sum) counts maps with NaN or ±inf, excluded with a warning;
    ``auc_scores`` (``cat``) keeps per-sample AUCs for :meth:`per_sample_auc`.

    Args:
        steps: Number of removal steps.
        max_fraction: Fraction of pixels removed at the last step, in (0, 1].
        order: ``"most_relevant_first"``, ``"least_relevant_first"`` or ``"random"``.
        replacement: ``"blur"``, ``"zero"``, ``"mean"`` or a tensor broadcastable to the images.
        score: ``"softmax"`` or ``"logit"``.
        batch_size: Most perturbed copies per forward pass.
        seed: Seed of the tie-breaking permutation; each ``update`` call reuses it.
        blur_kernel_size: Odd Gaussian kernel size for ``replacement="blur"``.
        blur_sigma: Gaussian standard deviation for ``replacement="blur"``.
        normalize: Divide the mean curve by the mean unperturbed score before the AUC.
        kwargs: Forwarded to :class:`torchmetrics.Metric`.

    Raises:
        BadInputError: For invalid options.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[1.0] * 4, [0.0] * 4]))
        ...     _ = model[1].bias.zero_()
        >>> metric = PixelDeletion(steps=4, replacement="zero", score="logit")
        >>> metric.update(model, torch.ones(3, 1, 2, 2), torch.rand(3, 2, 2), target=0)
        >>> result = metric.compute()
        >>> result["auc"], result["curve"], metric.higher_is_better
        (tensor(2.), tensor([4., 3., 2., 1., 0.]), False)
    """

    is_differentiable = False
    full_state_update = False

    curve_sum: Tensor
    count: Tensor
    num_nan: Tensor
    auc_scores: list[Tensor]

    def __init__(
        self,
        steps: int = 20,
        max_fraction: float = 1.0,
        order: DeletionOrder = "most_relevant_first",
        replacement: Replacement | Tensor = "blur",
        score: DeletionScore = "softmax",
        batch_size: int = 64,
        seed: int = 0,
        blur_kernel_size: int = 31,
        blur_sigma: float = 7.0,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        options = DeletionOptions(
            steps,
            max_fraction,
            order,
            replacement,
            score,
            batch_size,
            seed,
            blur_kernel_size,
            blur_sigma,
        )
        if not isinstance(normalize, bool):
            raise BadInputError.for_argument("normalize", "True or False", repr(normalize))
        super().__init__(**kwargs)
        self.options = options
        """Every deletion option, checked once here and passed whole to each update."""
        self.normalize = normalize
        self.steps, self.max_fraction, self.order = steps, max_fraction, order
        self.replacement, self.score, self.batch_size = replacement, score, batch_size
        self.seed, self.blur_kernel_size, self.blur_sigma = seed, blur_kernel_size, blur_sigma
        self.add_state("curve_sum", default=torch.zeros(steps + 1), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("num_nan", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("auc_scores", default=[], dist_reduce_fx="cat")

    @classmethod
    def from_options(
        cls, options: DeletionOptions, normalize: bool = False, **kwargs: Any
    ) -> PixelDeletion:
        """The metric for checked ``options`` (e.g. built once by a caller with its own names).

        Example:
            >>> PixelDeletion.from_options(DeletionOptions(steps=4), normalize=True).steps
            4
        """
        options_by_name = {option.name: getattr(options, option.name) for option in fields(options)}
        return cls(**options_by_name, normalize=normalize, **kwargs)

    @property
    def higher_is_better(self) -> bool | None:  # type: ignore[override]
        """``False`` most relevant first, ``True`` least relevant first, ``None`` random."""
        return _HIGHER_IS_BETTER[self.order]

    @property
    def plot_lower_bound(self) -> float | None:  # type: ignore[override]
        """0 for softmax scores, unbounded for logits."""
        return 0.0 if self.score == "softmax" else None

    @property
    def plot_upper_bound(self) -> float | None:  # type: ignore[override]
        """1 for softmax scores, unbounded for logits."""
        return 1.0 if self.score == "softmax" else None

    def _fractions(self, like: Tensor) -> Tensor:
        return deletion_fractions(self.steps, self.max_fraction, like.dtype, like.device)

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        attributions: Tensor,
        target: Tensor | int,
        image_ids: Tensor | Sequence[int] | None = None,
    ) -> None:
        """Add the deletion curves of a batch; ``model`` is used, not kept.

        ``image_ids`` key each image's tie-breaking permutation. By default images are numbered
        in the order this metric receives them (0, 1, … across ``update`` calls since the last
        ``reset``), so several updates equal one call in a single process; under DDP pass
        dataset indices so that results do not depend on how the images are shared out.
        """
        if image_ids is None:
            seen = int(self.count) + int(self.num_nan)
            image_ids = torch.arange(seen, seen + images.shape[0])
        curves, finite = _pixel_deletion_update(
            model, images, attributions, target, self.options, image_ids
        )
        self.num_nan += warn_non_finite(type(self).__name__, finite)
        kept = curves[finite]
        self.curve_sum += kept.sum(dim=0).to(self.curve_sum)
        self.count += kept.shape[0]
        self.auc_scores.append(deletion_auc(kept, self._fractions(kept)).to(self.dtype))

    def compute(self) -> dict[str, Tensor]:
        """``{"auc", "curve", "fractions"}`` of the mean curve (NaN before any sample).

        With ``normalize=True`` the curve is divided by its first point and the result also
        holds ``"unperturbed_score"``, that point (the mean score of the intact images).
        """
        curve = self.curve_sum / self.count
        fractions = self._fractions(curve)
        if not self.normalize:
            return {"auc": deletion_auc(curve, fractions), "curve": curve, "fractions": fractions}
        ratio = normalize_curves(curve)
        return {
            "auc": deletion_auc(ratio, fractions),
            "curve": ratio,
            "fractions": fractions,
            "unperturbed_score": curve[0],
        }

    def per_sample_auc(self) -> Tensor:
        """Every included sample's AUC, gathered from every process (a collective when distributed).

        Returns:
            ``(N,)`` AUCs in the order they were accumulated (rank by rank).
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn):
            if isinstance(self.auc_scores, list) and not self.auc_scores:
                return torch.zeros(0, dtype=self.dtype, device=self.device)
            return dim_zero_cat(self.auc_scores).clone()

    def plot(
        self,
        val: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]] | None = None,
        ax: Any = None,
    ) -> tuple[Any, Any]:
        """Plot the mean deletion curve, or several (e.g. one per epoch) on the same axis.

        Args:
            val: A result of :meth:`compute`, a sequence of them, or ``None`` to compute one.
            ax: A matplotlib axis to draw on; a new figure is made when ``None``.

        Returns:
            The figure and the axis.

        Example:
            >>> import torch
            >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
            >>> metric = PixelDeletion(steps=4, order="least_relevant_first")
            >>> metric.update(model, torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4), target=1)
            >>> fig, ax = metric.plot()
            >>> ax.get_title()
            'Pixel deletion, least relevant first (AUC higher is better)'
        """
        if val is None:
            results: list[Mapping[str, Tensor]] = [self.compute()]
        else:
            results = [val] if isinstance(val, Mapping) else list(val)
        direction = direction_label(self.higher_is_better)
        direction = "reference line" if self.higher_is_better is None else f"AUC {direction}"
        title = f"Pixel deletion, {self.order.replace('_', ' ')} ({direction})"
        ylabel = "target softmax probability" if self.score == "softmax" else "target logit"
        bounds = (self.plot_lower_bound, self.plot_upper_bound)
        if self.normalize:
            ylabel, bounds = f"{ylabel} / unperturbed", (0.0, None)
        return plot_curves(results, ax, title, ylabel, bounds)
