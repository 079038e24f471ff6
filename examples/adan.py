"""Adan (Xie et al. 2022), written with minioptim's extension API in a few lines.

The previous gradient is state that starts as the first gradient (``State(init=...)``),
so the first gradient difference is zero, as in the paper. Tested in tests/test_examples.py
against a per-tensor loop. Weight decay is decoupled (the paper's ``no_prox`` variant).
"""

from minioptim import FusedOptimizer, State


class Adan(FusedOptimizer):
    r"""m ← β₁m + (1−β₁)g,  n ← β₂n + (1−β₂)Δ with Δ = g − g_prev,
    v ← β₃v + (1−β₃)(g + β₂Δ)²,
    p ← p(1 − ηλ) − η (m/c₁ + β₂ n/c₂) / (√(v/c₃) + ε),  cᵢ = 1 − βᵢᵗ."""

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def state_names(self, group):
        previous = State("prev_grad", init=lambda param, grad: grad)
        return ("exp_avg", "exp_avg_diff", "exp_avg_sq", previous)

    def update(self, group, param, grad, state, step):
        b1, b2, b3 = group["betas"]
        diff = grad - state["prev_grad"]
        state["exp_avg"].lerp_(grad, 1 - b1)
        state["exp_avg_diff"].lerp_(diff, 1 - b2)
        u = grad + b2 * diff
        state["exp_avg_sq"].mul_(b3).addcmul_(u, u, value=1 - b3)
        state["prev_grad"].copy_(grad)
        c1, c2, c3 = (1 - b**step for b in (b1, b2, b3))
        denom = (state["exp_avg_sq"] / c3).sqrt_().add_(group["eps"])
        direction = (state["exp_avg"] / c1 + b2 * state["exp_avg_diff"] / c2) / denom
        param.mul_(1 - group["lr"] * group["weight_decay"])
        param.sub_(direction, alpha=group["lr"])
