"""Assignment 1, wrong: weight decay written into p.grad (grad.add_), which the
assignment forbids: the user's gradient changes under step()."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def update(self, group, param, grad, state, step):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad.add_(param, alpha=weight_decay)  # WRONG: in place, into p.grad
        if momentum != 0:
            buffer = state["momentum_buffer"]
            if step == 1:
                buffer.copy_(grad)
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        param.add_(grad, alpha=-group["lr"])
