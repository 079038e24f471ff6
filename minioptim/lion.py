"""Lion, fused."""

from __future__ import annotations

from typing import Any

from . import _checks, _docs
from .base import FLOAT_DTYPES, FusedOptimizer, Params
from .functional import fused_lion_, lion_
from .precision import Precision
from .rule import Rule


@_docs.fill
class Lion(FusedOptimizer):
    r"""Fused Lion (EvoLved Sign Momentum).

    The rule is :func:`minioptim.functional.lion_`:
    :math:`p \leftarrow p(1-\eta\lambda) - \eta\,\operatorname{sign}(\beta_1 m + (1-\beta_1) g)`,
    then :math:`m \leftarrow \beta_2 m + (1-\beta_2) g`. Every coordinate moves by
    :math:`\eta` (plus decay), so Lion wants a learning rate 3–10× smaller than AdamW's
    and a weight decay 3–10× larger, keeping :math:`\eta\lambda` (Chen et al., 2023).
    The same iterates as ``optax.lion``.

    Parameters
    ----------
    {params}
    lr:
        Learning rate :math:`\eta`. {tensor_lr}
    betas:
        :math:`(\beta_1, \beta_2)`: the interpolation used for the step and the EMA kept as
        momentum. Two floats, or two 1-element tensors (a tensor and a float raise, as for
        Adam).
    weight_decay:
        Decoupled weight decay :math:`\lambda`.
    maximize:
        Ascend instead of descend.
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = minioptim.Lion(model.parameters(), weight_decay=0.1)

    References
    ----------
    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """

    step_in_state = False  # the state is one moving average, as in optax.lion
    fast_dtypes = FLOAT_DTYPES
    rule = Rule(lion_, fast=fused_lion_)

    def __init__(
        self,
        params: Params,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(
            params,
            defaults,
            impl=impl,
            max_grad_norm=max_grad_norm,
            precision=precision,
            capturable=capturable,
        )

    def check_group(self, group: dict[str, Any]) -> None:
        _checks.non_negative(group, "lr", "weight_decay")
        _checks.betas(group)

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg",)
