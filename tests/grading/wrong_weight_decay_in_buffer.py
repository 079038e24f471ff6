"""Assignment 1, wrong: weight decay added to the momentum buffer on its own, not to
the gradient (undamped, and missing from the Nesterov direction)."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def update(self, group, param, grad, state, step):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if momentum != 0:
            buffer = state["momentum_buffer"]
            if step == 1:
                buffer.copy_(grad)
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            buffer.add_(param, alpha=weight_decay)  # WRONG: not through g
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        else:
            grad = grad.add(param, alpha=weight_decay)
        param.add_(grad, alpha=-group["lr"])
