"""Assignment 3, wrong: the moments bias-corrected in place, so the state keeps the
corrected values and the next step corrects them again."""

import torch
from assignment3 import LAMB as Correct


class LAMB(Correct):
    def update(self, group, param, grad, state, step, layout):
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m.div_(1 - beta1**step)  # WRONG: in place, into the state
        v_hat = v.div_(1 - beta2**step)
        r = m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * param
        w, u = layout.norm(param), layout.norm(r)
        trust = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
        state["trust"].copy_(trust)
        param.add_(layout.expand(trust) * r, alpha=-group["lr"])
