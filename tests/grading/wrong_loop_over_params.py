"""Assignment 3, wrong: LAMB's trust ratios in a Python loop over the parameters."""

from assignment3 import LAMB as Correct


class LAMB(Correct):
    def update(self, group, param, grad, state, step, layout):
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        r = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + group["eps"])
        r += group["weight_decay"] * param
        # WRONG (slow): one set of operations per parameter
        trusts = layout.views(state["trust"])
        for p, d, trust in zip(layout.views(param), layout.views(r), trusts, strict=True):
            w, u = p.norm(), d.norm()
            trust.copy_(w / u if w > 0 and u > 0 else 1.0)
            p.add_(trust * d, alpha=-group["lr"])
