"""Adam and AdamW, fused."""

from __future__ import annotations

from typing import Any

from . import _checks, _docs
from .base import FLOAT_DTYPES, FusedOptimizer, Params
from .functional import adam_, fused_adam_
from .precision import Precision
from .rule import Rule


@_docs.fill
class Adam(FusedOptimizer):
    r"""Fused Adam: a drop-in for ``torch.optim.Adam``.

    The rule is :func:`minioptim.functional.adam_`:
    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
    :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
    :math:`p \leftarrow p - \frac{\eta}{1-\beta_1^t} \frac{m}{\sqrt{v/(1-\beta_2^t)} + \epsilon}`.

    Parameters
    ----------
    {params}
    lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay:
        As in ``torch.optim.Adam``, with the same defaults. ``decoupled_weight_decay=True``
        is AdamW. {tensor_lr} So may the betas: both, or neither (a tensor and a
        float raise, as in torch.optim).
    {compat}
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = minioptim.Adam(model.parameters(), lr=1e-3)

    References
    ----------
    Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    Reddi, Kale and Kumar, "On the Convergence of Adam and Beyond", ICLR 2018 (AMSGrad).
    """

    rule = Rule(adam_, fast=fused_adam_)
    cuda_fast_dtypes = FLOAT_DTYPES

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
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
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
        super().__init__(
            params,
            defaults,
            impl=impl,
            max_grad_norm=max_grad_norm,
            precision=precision,
            capturable=capturable,
        )

    def check_group(self, group: dict[str, Any]) -> None:
        _checks.non_negative(group, "lr", "eps", "weight_decay")
        _checks.betas(group)
        _checks.fused_or_foreach(group)
        _checks.no_tensor_with_foreach(group, type(self).__name__)

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ("exp_avg", "exp_avg_sq")
        return names + ("max_exp_avg_sq",) if group["amsgrad"] else names


class AdamW(Adam):
    r"""Fused AdamW: Adam with decoupled weight decay, a drop-in for ``torch.optim.AdamW``.

    The weight decay shrinks the parameters directly, :math:`p \leftarrow p(1-\eta\lambda)`,
    instead of being added to the gradient; the default is ``weight_decay=1e-2``.
    Other parameters are those of :class:`Adam`.

    References
    ----------
    Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
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
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
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
            max_grad_norm=max_grad_norm,
            precision=precision,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As torch.optim.AdamW: a state dict loaded into AdamW always decays decoupled.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
