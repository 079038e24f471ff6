"""Assignment 2, wrong: RMSprop keeps its square average in a dict of its own, keyed by
id(param), beside the optimizer's state (no checkpoint saves or restores it)."""

import torch
from assignment2 import Adagrad  # noqa: F401  (correct; graded too)
from assignment2 import RMSprop as Correct


class RMSprop(Correct):
    def __init__(self, params, **hyper):
        super().__init__(params, **hyper)
        self.square_avgs = {}

    def state_names(self, group):
        names = ("momentum_buffer",) if group["momentum"] > 0 else ()
        return names + (("grad_avg",) if group["centered"] else ())

    def update(self, group, param, grad, state, step):
        alpha, eps = group["alpha"], group["eps"]
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if id(param) not in self.square_avgs:  # WRONG: a state of its own
            self.square_avgs[id(param)] = torch.zeros_like(param)
        square_avg = self.square_avgs[id(param)]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_().add_(eps)
        else:
            avg = square_avg.sqrt().add_(eps)
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer.mul_(group["momentum"]).addcdiv_(grad, avg)
            param.add_(buffer, alpha=-group["lr"])
        else:
            param.addcdiv_(grad, avg, value=-group["lr"])
