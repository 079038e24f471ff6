"""signSGD and Signum, fused."""

from __future__ import annotations

from typing import Any

from . import _checks, _docs
from .base import FLOAT_DTYPES, FusedOptimizer, Params
from .functional import fused_sign_sgd_, sign_sgd_
from .precision import Precision
from .rule import Rule


@_docs.fill
class SignSGD(FusedOptimizer):
    r"""Fused signSGD, and Signum when ``momentum > 0``.

    The rule is :func:`minioptim.functional.sign_sgd_`: every coordinate moves by
    exactly :math:`\eta` against the sign of its gradient (or of the gradient's
    exponential moving average :math:`m \leftarrow \mu m + (1-\mu) g`), so the step size
    does not depend on the gradient's scale. Optax calls these ``sign_sgd`` and ``signum``.

    Parameters
    ----------
    {params}
    lr:
        Learning rate :math:`\eta`: the size of every coordinate's step. {tensor_lr}
    momentum:
        EMA coefficient :math:`\mu \in [0, 1)`; 0 is signSGD.
    weight_decay:
        Decoupled weight decay :math:`\lambda`: :math:`p \leftarrow p(1-\eta\lambda)`.
    maximize:
        Ascend instead of descend.
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = minioptim.SignSGD(model.parameters(), momentum=0.9)

    References
    ----------
    Bernstein, Wang, Azizzadenesheli and Anandkumar, "signSGD: Compressed Optimisation
    for Non-Convex Problems", ICML 2018.
    """

    step_in_state = False
    # The fast path is the reference rule run block by block: right for every dtype.
    fast_dtypes = FLOAT_DTYPES
    rule = Rule(sign_sgd_, fast=fused_sign_sgd_)

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, maximize=maximize)
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
        _checks.unit_interval(group, "momentum", group["momentum"])

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()
