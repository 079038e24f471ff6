"""A student's optimizer, as lecture 6 writes it: RMSprop as a ``FusedOptimizer``.

One ``update`` method of eager tensor operations, no fast path, and an ``__init__`` that
takes no ``impl``: what the generated kernels are for. Its torch contender is
``torch.optim.RMSprop`` (without momentum, the same rule).
"""

from __future__ import annotations

from minioptim import FusedOptimizer


class RMSprop(FusedOptimizer):
    """RMSprop on flat buffers (torch.optim's rule, without momentum)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def state_names(self, group):
        return ("square_avg",)

    def update(self, group, param, grad, state, step):
        alpha, eps = group["alpha"], group["eps"]
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        v = state["square_avg"]  # zeros before the first update
        v.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        param.addcdiv_(grad, v.sqrt().add_(eps), value=-group["lr"])
