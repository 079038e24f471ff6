"""Assignment 1, wrong: counts the optimizer's steps itself, the same for every parameter,
so a parameter that gets its first gradient at step 5 never has step == 1: its buffer
starts at zero and its first step is damped."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def __init__(self, params, **hyper):
        super().__init__(params, **hyper)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1  # WRONG: the optimizer's count, not each parameter's
        return super().step(closure)

    def update(self, group, param, grad, state, step):
        super().update(group, param, grad, state, self.steps)
