"""Assignment 2, wrong: Adagrad counts its steps itself, so a checkpoint loses them."""

from assignment2 import Adagrad as Correct
from assignment2 import RMSprop  # noqa: F401  (correct; graded too)


class Adagrad(Correct):
    def __init__(self, params, **hyper):
        super().__init__(params, **hyper)
        self.t = 0  # WRONG: not in the state_dict; the step argument is

    def update(self, group, param, grad, state, step):
        self.t += 1
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        lr = group["lr"] / (1 + (self.t - 1) * group["lr_decay"])
        state["sum"].addcmul_(grad, grad)
        param.addcdiv_(grad, state["sum"].sqrt().add_(group["eps"]), value=-lr)
