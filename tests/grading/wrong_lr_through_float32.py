"""Assignment 2, wrong: Adagrad passes its learning rate through a float32 tensor
(0.1 becomes 0.100000001490116...): a relative error of 1.5e-8 in every step."""

import torch
from assignment2 import Adagrad as Correct
from assignment2 import RMSprop  # noqa: F401  (correct; graded too)


class Adagrad(Correct):
    def update(self, group, param, grad, state, step):
        lr = torch.tensor(group["lr"], dtype=torch.float32).item()  # WRONG: float32
        super().update({**group, "lr": lr}, param, grad, state, step)
