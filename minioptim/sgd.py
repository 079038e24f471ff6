"""SGD with momentum, dampening, Nesterov momentum and weight decay, fused."""

from __future__ import annotations

from typing import Any

from . import _checks
from .base import FusedOptimizer, Params
from .functional import fused_sgd_, sgd_


class SGD(FusedOptimizer):
    r"""Fused stochastic gradient descent: a drop-in for ``torch.optim.SGD``.

    The rule is :func:`minioptim.functional.sgd_`:
    :math:`b \leftarrow \mu b + (1-\tau) g`, :math:`p \leftarrow p - \eta b`
    (see there for weight decay, Nesterov and maximize).

    Parameters
    ----------
    params:
        Tensors or param-group dicts, as for ``torch.optim.SGD``.
    lr, momentum, dampening, weight_decay, nesterov, maximize:
        As in ``torch.optim.SGD``, with the same defaults.
    foreach, fused, differentiable:
        Accepted for compatibility with ``torch.optim.SGD`` and kept in ``param_groups``;
        ``foreach`` and ``fused`` change nothing (every update here is fused over a flat
        buffer), ``differentiable=True`` is not supported.
    impl:
        ``"auto"``, ``"reference"`` or ``"fast"``; see :class:`~minioptim.FusedOptimizer`.
    """

    step_in_state = False  # torch.optim.SGD keeps only 'momentum_buffer'

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
        super().__init__(params, defaults, impl=impl)

    def check_group(self, group: dict[str, Any]) -> None:
        _checks.non_negative(group, "lr", "momentum", "weight_decay")
        _checks.number(group, "dampening")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def update(self, group, param, grad, state, step):
        sgd_(param, grad, state.get("momentum_buffer"), **self._options(group, step))

    def fast_update(self, group, param, grad, state, step):
        fused_sgd_(param, grad, state.get("momentum_buffer"), **self._options(group, step))

    @staticmethod
    def _options(group: dict[str, Any], step: int) -> dict[str, Any]:
        return dict(
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            first_step=step == 1,
        )
