"""Assignment 1, wrong: the buffer starts at zero, so step 1 gives (1 - dampening) g."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def update(self, group, param, grad, state, step):
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            buffer = state["momentum_buffer"]
            # WRONG: no special case for step == 1
            buffer.mul_(group["momentum"]).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
        param.add_(grad, alpha=-group["lr"])
