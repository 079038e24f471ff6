"""Assignment 3, wrong: weight decay applied outside the trust ratio, AdamW-style
(p *= 1 - lr * weight_decay), and the ratio computed from the Adam direction alone."""

import torch
from assignment3 import LAMB as Correct


class LAMB(Correct):
    def update(self, group, param, grad, state, step, layout):
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        r = m_hat / (v_hat.sqrt() + group["eps"])
        param.mul_(1 - group["lr"] * group["weight_decay"])  # WRONG: outside the ratio
        w, u = layout.norm(param), layout.norm(r)
        trust = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
        state["trust"].copy_(trust)
        param.add_(layout.expand(trust) * r, alpha=-group["lr"])
