"""Assignment 2, wrong: RMSprop divides by sqrt(v + eps) instead of sqrt(v) + eps."""

from assignment2 import Adagrad  # noqa: F401  (correct; graded too)
from assignment2 import RMSprop as Correct


class RMSprop(Correct):
    def update(self, group, param, grad, state, step):
        alpha, eps = group["alpha"], group["eps"]
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).add_(eps).sqrt_()  # WRONG
        else:
            avg = square_avg.add(eps).sqrt_()  # WRONG: eps inside the square root
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer.mul_(group["momentum"]).addcdiv_(grad, avg)
            param.add_(buffer, alpha=-group["lr"])
        else:
            param.addcdiv_(grad, avg, value=-group["lr"])
