"""AdEMAMix (Pagliardini et al. 2024), written with minioptim's extension API.

Adam plus a second, slow momentum (β₃ close to 1) mixed in with weight α. The paper
warms α and β₃ up over training; here they are group hyper-parameters, read at every
step, so a training loop can ramp them (``group["alpha"] = ...``) as it would a learning
rate. Tested in tests/test_examples.py against a per-tensor loop.
"""

from minioptim import FusedOptimizer


class AdEMAMix(FusedOptimizer):
    r"""m₁ ← β₁m₁ + (1−β₁)g,  m₂ ← β₃m₂ + (1−β₃)g,  v ← β₂v + (1−β₂)g²,
    p ← p − η ((m₁/c₁ + α m₂) / (√(v/c₂) + ε) + λp),  cᵢ = 1 − βᵢᵗ."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5.0, eps=1e-8,
                 weight_decay=0.0):  # fmt: skip
        defaults = dict(lr=lr, betas=betas, alpha=alpha, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def state_names(self, group):
        return ("exp_avg_fast", "exp_avg_slow", "exp_avg_sq")

    def update(self, group, param, grad, state, step):
        b1, b2, b3 = group["betas"]
        state["exp_avg_fast"].lerp_(grad, 1 - b1)
        state["exp_avg_slow"].lerp_(grad, 1 - b3)
        state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        c1, c2 = 1 - b1**step, 1 - b2**step
        denom = (state["exp_avg_sq"] / c2).sqrt_().add_(group["eps"])
        mixed = state["exp_avg_fast"] / c1 + group["alpha"] * state["exp_avg_slow"]
        param.mul_(1 - group["lr"] * group["weight_decay"])
        param.addcdiv_(mixed, denom, value=-group["lr"])
