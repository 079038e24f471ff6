"""SGD with momentum, dampening, Nesterov momentum and weight decay, fused."""

from __future__ import annotations

from typing import Any

from . import _checks, _docs
from .base import FLOAT_DTYPES, FusedOptimizer, Params
from .functional import fused_sgd_, sgd_
from .precision import Precision
from .rule import Rule


@_docs.fill
class SGD(FusedOptimizer):
    r"""Fused stochastic gradient descent: a drop-in for ``torch.optim.SGD``.

    The rule is :func:`minioptim.functional.sgd_`:
    :math:`b \leftarrow \mu b + (1-\tau) g`, :math:`p \leftarrow p - \eta b`
    (see there for weight decay, Nesterov and maximize).

    Parameters
    ----------
    {params}
    lr, momentum, dampening, weight_decay, nesterov, maximize:
        As in ``torch.optim.SGD``, with the same defaults. {tensor_lr}
    {compat}
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = minioptim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    References
    ----------
    Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    Sutskever et al., "On the importance of initialization and momentum in deep
    learning", ICML 2013 (momentum and Nesterov momentum in this form).
    """

    step_in_state = False  # torch.optim.SGD keeps only 'momentum_buffer'
    rule = Rule(sgd_, fast=fused_sgd_)
    cuda_fast_dtypes = FLOAT_DTYPES

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(
            params,
            defaults,
            impl=impl,
            max_grad_norm=max_grad_norm,
            precision=precision,
            capturable=capturable,
        )

    def check_group(self, group: dict[str, Any]) -> None:
        _checks.non_negative(group, "lr", "momentum", "weight_decay")
        _checks.number(group, "dampening")
        _checks.fused_or_foreach(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()
