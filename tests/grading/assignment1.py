"""Assignment 1, reference solution: SGD with momentum, exactly as torch.optim.SGD."""

from minioptim import FusedOptimizer


class MomentumSGD(FusedOptimizer):
    """Heavy-ball and Nesterov momentum with dampening and coupled weight decay."""

    step_in_state = False  # torch.optim.SGD keeps only 'momentum_buffer'

    def __init__(
        self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def check_group(self, group):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not 0 <= dampening <= 1:
            raise ValueError(f"dampening must be in [0, 1], got {dampening}")
        if group["weight_decay"] < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")
        if group["nesterov"] and (momentum == 0 or dampening != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )

    def state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def update(self, group, param, grad, state, step):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)  # coupled: g <- g + lambda p
        if momentum != 0:
            buffer = state["momentum_buffer"]
            if step == 1:
                buffer.copy_(grad)  # torch.optim.SGD starts the buffer at g itself
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        param.add_(grad, alpha=-group["lr"])
