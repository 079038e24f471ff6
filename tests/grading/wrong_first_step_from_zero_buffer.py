"""Assignment 1, wrong: the first step detected from a buffer that is still all zero,
not from step == 1 (wrong when a first gradient is zero)."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def update(self, group, param, grad, state, step):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if momentum != 0:
            buffer = state["momentum_buffer"]
            if (buffer == 0).all():  # WRONG: a zero buffer is no sign of step 1
                buffer.copy_(grad)
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        param.add_(grad, alpha=-group["lr"])
