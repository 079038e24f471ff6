"""Assignment 2, wrong: RMSprop assigns a new tensor to state["square_avg"]."""

from assignment2 import Adagrad  # noqa: F401  (correct; graded too)
from assignment2 import RMSprop as Correct


class RMSprop(Correct):
    def update(self, group, param, grad, state, step):
        alpha = group["alpha"]
        # WRONG: a new tensor; the optimizer keeps the old one
        state["square_avg"] = alpha * state["square_avg"] + (1 - alpha) * grad * grad
        param.addcdiv_(grad, state["square_avg"].sqrt() + group["eps"], value=-group["lr"])
