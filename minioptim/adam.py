"""Adam and AdamW, fused."""

from __future__ import annotations

from typing import Any

from . import _checks
from .base import FusedOptimizer, Params
from .functional import adam_, fused_adam_


class Adam(FusedOptimizer):
    r"""Fused Adam: a drop-in for ``torch.optim.Adam``.

    The rule is :func:`minioptim.functional.adam_`:
    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
    :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
    :math:`p \leftarrow p - \frac{\eta}{1-\beta_1^t} \frac{m}{\sqrt{v/(1-\beta_2^t)} + \epsilon}`.

    Parameters
    ----------
    params:
        Tensors or param-group dicts, as for ``torch.optim.Adam``.
    lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay:
        As in ``torch.optim.Adam``, with the same defaults. ``decoupled_weight_decay=True``
        is AdamW.
    foreach, fused, capturable, differentiable:
        Accepted for compatibility with ``torch.optim.Adam`` and kept in ``param_groups``;
        ``foreach`` and ``fused`` change nothing (every update here is fused over a flat
        buffer), ``capturable=True`` and ``differentiable=True`` are not supported.
    impl:
        ``"auto"``, ``"reference"`` or ``"fast"``; see :class:`~minioptim.FusedOptimizer`.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        impl: str = "auto",
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults, impl=impl)

    def check_group(self, group: dict[str, Any]) -> None:
        _checks.non_negative(group, "lr", "eps", "weight_decay")
        betas = group["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for index, beta in enumerate(betas):
            _checks.unit_interval(group, f"betas[{index}]", beta)

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ("exp_avg", "exp_avg_sq")
        return names + ("max_exp_avg_sq",) if group["amsgrad"] else names

    def update(self, group, param, grad, state, step):
        adam_(param, grad, *self._moments(state), **self._options(group, step))

    def fast_update(self, group, param, grad, state, step):
        fused_adam_(param, grad, *self._moments(state), **self._options(group, step))

    @staticmethod
    def _moments(state: dict) -> tuple:
        return state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq")

    @staticmethod
    def _options(group: dict[str, Any], step: int) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return dict(
            step=step,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )


class AdamW(Adam):
    r"""Fused AdamW: Adam with decoupled weight decay, a drop-in for ``torch.optim.AdamW``.

    The weight decay shrinks the parameters directly, :math:`p \leftarrow p(1-\eta\lambda)`,
    instead of being added to the gradient; the default is ``weight_decay=1e-2``.
    Other parameters are those of :class:`Adam`.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            impl=impl,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As torch.optim.AdamW: a state dict loaded into AdamW always decays decoupled.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
