"""Assignment 2, wrong: Adagrad keeps its own step count in the param group. Its own
checkpoints carry the count, but torch.optim's do not: after loading one the learning
rate decays from step 1 again."""

from assignment2 import Adagrad as Correct
from assignment2 import RMSprop  # noqa: F401  (correct; graded too)


class Adagrad(Correct):
    def update(self, group, param, grad, state, step):
        group["t"] = group.get("t", 0) + 1  # WRONG: the step argument is the count
        super().update(group, param, grad, state, group["t"])
