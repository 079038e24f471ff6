"""Assignment 3, reference solution: LAMB with per-tensor trust ratios, fused."""

import torch

from minioptim import FusedOptimizer, State


class LAMB(FusedOptimizer):
    """LAMB (You et al., 2020): Adam's direction, scaled per tensor by ||p|| / ||r||."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def state_names(self, group):
        return ("exp_avg", "exp_avg_sq", State("trust", shape=()))

    def update(self, group, param, grad, state, step, layout):
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        r = m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * param
        w, u = layout.norm(param), layout.norm(r)  # one norm per tensor, no loop
        trust = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
        state["trust"].copy_(trust)  # the last ratio of each tensor, for plots
        param.add_(layout.expand(trust) * r, alpha=-group["lr"])
