"""Assignment 1, right: check_group raises torch.optim.SGD's own messages where torch
has one ("Invalid learning rate", "Nesterov momentum requires ...")."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def check_group(self, group):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0 <= dampening <= 1:
            raise ValueError(f"Invalid dampening value: {dampening}")
        if group["weight_decay"] < 0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
