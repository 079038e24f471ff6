"""Assignment 3, wrong: sqrt(v) divided by the second moment's bias correction itself,
not by its square root."""

import torch
from assignment3 import LAMB as Correct


class LAMB(Correct):
    def update(self, group, param, grad, state, step, layout):
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**step)
        root_v_hat = v.sqrt() / (1 - beta2**step)  # WRONG: sqrt missing on the correction
        r = m_hat / (root_v_hat + group["eps"]) + group["weight_decay"] * param
        w, u = layout.norm(param), layout.norm(r)
        trust = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
        state["trust"].copy_(trust)
        param.add_(layout.expand(trust) * r, alpha=-group["lr"])
