"""Integrated Gradients (Sundararajan et al., 2017), computed by Captum.

``IG(x) = (x - x') ⊙ ∫₀¹ ∂f_c(x' + t (x - x'))/∂x dt`` for the raw target logit ``f_c`` and a
baseline ``x'``, the integral approximated by a quadrature rule of ``n_steps`` nodes ``t_i`` and
weights ``w_i``: ``(x - x') ⊙ Σ_i w_i ∂f_c(x' + t_i (x - x'))/∂x``.

The baseline defaults to ``0`` *in the model's normalised input space*: for inputs normalised
with the dataset mean and standard deviation that is the mean image, not black. Pass another
constant or tensor when your normalisation differs.

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    ...                           num_classes=4)
    >>> ig = IntegratedGradients(model, n_steps=8)
    >>> ig.attribute(torch.randn(2, 3, 32, 32), target=torch.tensor([0, 3])).shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from torch import Tensor, nn

from dave_lightning._common import check_choice, check_int
from dave_lightning.baselines._captum_adapter import RowAttributor
from dave_lightning.errors import BadInputError

__all__ = ["INTEGRATION_METHODS", "IntegratedGradients"]

INTEGRATION_METHODS = ("gausslegendre", "riemann_left", "riemann_middle", "riemann_right")
"""Captum's quadrature rules this wrapper accepts.

Captum's ``"riemann_trapezoid"`` is left out on purpose: its weights are ``1/n`` (halved at the
ends) on ``n`` nodes spaced ``1/(n - 1)``, so they sum to ``(n - 1)/n`` and the completeness
``Σ IG = f(x) - f(x')`` is off by that factor.
"""


def _check_baseline(baseline: Any) -> float | Tensor:
    expected = "a finite number or a finite floating tensor broadcastable to (C, H, W)"
    if isinstance(baseline, bool):
        raise BadInputError.for_argument("baseline", expected, repr(baseline))
    if isinstance(baseline, int | float):
        value = float(baseline)
        if not torch.isfinite(torch.tensor(value)):
            raise BadInputError.for_argument("baseline", expected, repr(baseline))
        return value
    if (
        not isinstance(baseline, Tensor)
        or not baseline.is_floating_point()
        or baseline.dim() > 3
        or not bool(torch.isfinite(baseline).all())
    ):
        raise BadInputError.for_argument("baseline", expected, repr(baseline))
    return baseline.detach()


class IntegratedGradients(RowAttributor):
    """Integrated Gradients of the raw target logit along the straight path from a baseline.

    Each (image, target) row needs ``n_steps`` model inputs; Captum's ``internal_batch_size`` is
    tied to ``max_batch_size``, so no pass holds more than ``max_batch_size`` inputs (rows are
    handed to Captum at most ``max_batch_size`` at a time).

    Args:
        model: A classifier returning ``(B, num_classes)`` raw logits.
        n_steps: Number of quadrature nodes (Captum's default, 50).
        method: One of :data:`INTEGRATION_METHODS`; ``"gausslegendre"`` (Captum's default) is
            the most accurate for a given ``n_steps``. The Riemann rules need ``n_steps >= 2``.
        baseline: ``x'``: a constant, or a tensor broadcastable to one image ``(C, H, W)``, in
            the model's normalised input space. Default ``0.0`` (see the module docstring).
        max_batch_size: Largest number of model inputs per forward/backward pass.
        autocast_dtype: ``None`` (default) computes with autocast off; e.g. ``torch.bfloat16``
            opts in.

    Raises:
        BadInputError: For an option out of range.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3, bias=False))
        >>> x = torch.randn(1, 3, 2, 2)
        >>> maps = IntegratedGradients(model, n_steps=4).attribute(x, target=1)
        >>> torch.allclose(maps.sum(), model(x)[0, 1])  # completeness, f(0) = 0 here
        True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        n_steps: int = 50,
        method: str = "gausslegendre",
        baseline: float | Tensor = 0.0,
        max_batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model, max_batch_size=max_batch_size, autocast_dtype=autocast_dtype)
        self.method = check_choice("method", method, INTEGRATION_METHODS, shown=repr)
        self.n_steps = check_int("n_steps", n_steps, minimum=1 if method == "gausslegendre" else 2)
        self.baseline = _check_baseline(baseline)

    def __repr__(self) -> str:
        return (
            f"IntegratedGradients(n_steps={self.n_steps}, method={self.method!r}, "
            f"max_batch_size={self.max_batch_size})"
        )

    def _attribute_rows(self, inputs: Tensor, targets: Tensor, image_ids: list[int]) -> Tensor:
        method = CaptumIntegratedGradients(self._row_scores, multiply_by_inputs=True)
        attributions = method.attribute(
            inputs,
            baselines=self._baseline_for(inputs),
            additional_forward_args=(targets,),
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=self.max_batch_size,
        )
        return attributions.detach()

    def _baseline_for(self, inputs: Tensor) -> float | Tensor:
        if not isinstance(self.baseline, Tensor):
            return self.baseline
        try:
            baseline = torch.broadcast_to(self.baseline, inputs.shape[1:])
        except RuntimeError:
            raise BadInputError.for_argument(
                "baseline",
                f"a tensor broadcastable to one image {tuple(inputs.shape[1:])}",
                f"shape {tuple(self.baseline.shape)}",
            ) from None
        return baseline.to(device=inputs.device, dtype=inputs.dtype)[None]
