"""Schedule-free AdamW, fused, written with the public extension API only."""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _checks, _docs
from .base import FusedOptimizer, Params
from .precision import Precision
from .state import State


@_docs.fill
class ScheduleFreeAdamW(FusedOptimizer):
    r"""Schedule-free AdamW (Defazio et al. 2024): no learning-rate schedule, an average
    of the iterates instead.

    Three sequences: :math:`z` takes AdamW-like steps, :math:`x` is a weighted average
    of the :math:`z`'s (the point to evaluate), and the gradient is taken at their
    interpolation :math:`y = (1-\beta_1) z + \beta_1 x`. At step :math:`k` (from 1), with
    :math:`\eta_k = \eta\,\min(1, k/\text{warmup})\sqrt{1-\beta_2^k}`,
    :math:`w_k = k^r \max_{j \le k}\eta_j^{\,p}` (``weight_lr_power`` :math:`= p`) and
    :math:`c_k = w_k / \sum_{j \le k} w_j`:

    .. math::

        v &\leftarrow \beta_2 v + (1-\beta_2) g^2, \qquad
        d = \frac{g}{\sqrt v + \epsilon} + \lambda y, \\
        z &\leftarrow z - \eta_k d, \qquad
        x \leftarrow (1-c_k)\,x + c_k z, \qquad
        y = (1-\beta_1) z + \beta_1 x.

    Only :math:`z` and :math:`v` are kept: the parameters hold :math:`y` while training,
    and :math:`x = (y - (1-\beta_1) z)/\beta_1` follows from them, so the update of
    :math:`y` is one step, :math:`y \leftarrow (1-c_k) y + c_k z_{\text{old}} +
    \eta_k(\beta_1(1-c_k) - 1)\,d`. :meth:`eval` moves the parameters to :math:`x`
    (evaluate, save a checkpoint there), :meth:`train` back to :math:`y`.

    The step-dependent scalars (:math:`k`, :math:`\sum w_j`, :math:`\max\eta_j`, the mode)
    belong to a param group, not to a parameter, so they live in the group (``k``,
    ``weight_sum``, ``lr_max``, ``train_mode``, saved in ``state_dict()["param_groups"]``)
    and are advanced once per group and step, in :meth:`prepare`.

    Parameters
    ----------
    {params}
    lr, betas, eps, weight_decay, warmup_steps, r, weight_lr_power:
        As in the paper's reference implementation (``schedulefree.AdamWScheduleFree``),
        with its defaults: ``lr=0.0025``, ``betas=(0.9, 0.999)``, ``eps=1e-8``,
        ``weight_decay=0``, ``warmup_steps=0``, ``r=0``, ``weight_lr_power=2``.
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = minioptim.ScheduleFreeAdamW(model.parameters())
    >>> optimizer.train()  # before training (and after evaluating)
    >>> model(torch.ones(2, 4)).sum().backward()
    >>> optimizer.step()
    >>> optimizer.eval()  # before evaluating or saving

    References
    ----------
    Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, "The Road Less Scheduled",
    NeurIPS 2024.
    """

    step_in_state = False  # the step count that matters is the group's k

    def __init__(
        self,
        params: Params,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            k=0,
            weight_sum=0.0,
            lr_max=-1.0,
            train_mode=True,
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
        _checks.non_negative(group, "lr", "eps", "weight_decay", "warmup_steps", "r")
        _checks.betas(group)
        if group["betas"][0] == 0:
            raise ValueError("betas[0] must be > 0: x = (y - (1 - beta1) z) / beta1")

    def state_names(self, group: dict[str, Any]) -> tuple[State, ...]:
        return (State("z", init=lambda param, grad: param), State("exp_avg_sq"))

    def prepare(self, group: dict[str, Any], grads: list[torch.Tensor]) -> dict[str, Any]:
        """Advance the group's scalars once per step: :math:`k`, :math:`\\eta_k`,
        :math:`\\max \\eta_j`, :math:`\\sum w_j`; return :math:`\\eta_k` and :math:`c_k`."""
        super().prepare(group, grads)  # max_grad_norm, if set
        if not group["train_mode"]:
            raise RuntimeError(
                "ScheduleFreeAdamW.step() in eval mode: the parameters hold the average x, "
                "not the training point y. Call optimizer.train() before training steps"
            )
        k = group["k"] + 1
        beta2 = group["betas"][1]
        warmup = min(1.0, k / group["warmup_steps"]) if group["warmup_steps"] else 1.0
        lr = float(group["lr"]) * warmup * math.sqrt(1 - beta2**k)
        group["lr_max"] = max(lr, group["lr_max"])
        weight = k ** group["r"] * group["lr_max"] ** group["weight_lr_power"]
        group["weight_sum"] += weight
        group["k"] = k
        average = weight / group["weight_sum"] if group["weight_sum"] else 0.0
        return {"scheduled_lr": lr, "average_weight": average}

    def update(self, group, param, grad, state, step) -> None:
        beta1, beta2 = group["betas"]
        lr, c = group["scheduled_lr"], group["average_weight"]
        z, v = state["z"], state["exp_avg_sq"]
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        d = grad / (v.sqrt() + group["eps"])
        if group["weight_decay"] != 0:
            d.add_(param, alpha=group["weight_decay"])  # decay at y
        param.lerp_(z, c)  # y <- (1 - c) y + c z, with the old z
        param.add_(d, alpha=lr * (beta1 * (1 - c) - 1))
        z.sub_(d, alpha=lr)

    @torch.no_grad()
    def eval(self) -> None:
        """Move the parameters to the average :math:`x`: to evaluate, or to save there."""
        self._switch(train_mode=False, weight=lambda beta1: 1 - 1 / beta1)

    @torch.no_grad()
    def train(self) -> None:
        """Move the parameters back to :math:`y`, where the gradients are taken."""
        self._switch(train_mode=True, weight=lambda beta1: 1 - beta1)

    def _switch(self, train_mode: bool, weight) -> None:
        # x = lerp(y, z, 1 - 1/beta1) and y = lerp(x, z, 1 - beta1); parameters that have
        # not been updated yet have no z, and x = y = z for them.
        for group in self.param_groups:
            if group["train_mode"] == train_mode:
                continue
            for p in group["params"]:
                z = self.state.get(p, {}).get("z")
                if z is not None:
                    p.lerp_(z, weight(group["betas"][0]))
            group["train_mode"] = train_mode
