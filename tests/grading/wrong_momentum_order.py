"""Assignment 1, wrong: the parameters move with the buffer before it is updated."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def update(self, group, param, grad, state, step):
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if group["momentum"] == 0:
            param.add_(grad, alpha=-group["lr"])
            return
        buffer = state["momentum_buffer"]
        # WRONG: steps with the previous buffer (zero at step 1), then updates it
        if group["nesterov"]:
            param.add_(grad.add(buffer, alpha=group["momentum"]), alpha=-group["lr"])
        else:
            param.add_(buffer, alpha=-group["lr"])
        if step == 1:
            buffer.copy_(grad)
        else:
            buffer.mul_(group["momentum"]).add_(grad, alpha=1 - group["dampening"])
