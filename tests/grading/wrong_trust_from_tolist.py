"""Assignment 3, wrong: the trust ratios computed in a Python loop over w.tolist() (no
extra ATen operation per parameter, but Python work per parameter)."""

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
        r = m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * param
        w, u = layout.norm(param), layout.norm(r)
        ratios = [  # WRONG: one Python ratio per parameter
            a / b if a > 0 and b > 0 else 1.0 for a, b in zip(w.tolist(), u.tolist(), strict=True)
        ]
        trust = torch.tensor(ratios, dtype=w.dtype)
        state["trust"].copy_(trust)
        param.add_(layout.expand(trust) * r, alpha=-group["lr"])
