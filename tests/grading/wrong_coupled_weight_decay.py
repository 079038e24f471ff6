"""Assignment 3, wrong: LAMB adds weight decay to the gradient (coupled)."""

import torch
from assignment3 import LAMB as Correct


class LAMB(Correct):
    def update(self, group, param, grad, state, step, layout):
        beta1, beta2 = group["betas"]
        grad = grad.add(param, alpha=group["weight_decay"])  # WRONG: coupled
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        r = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + group["eps"])
        w, u = layout.norm(param), layout.norm(r)
        trust = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
        state["trust"].copy_(trust)  # the last ratio of each tensor, for plots
        param.add_(layout.expand(trust) * r, alpha=-group["lr"])
