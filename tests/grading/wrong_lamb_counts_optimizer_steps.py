"""Assignment 3, wrong: LAMB's bias correction with the optimizer's step count, so a
parameter that gets its first gradient at step 5 is corrected as if at step 5."""

from assignment3 import LAMB as Correct


class LAMB(Correct):
    def __init__(self, params, **hyper):
        super().__init__(params, **hyper)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1  # WRONG: the optimizer's count, not each parameter's
        return super().step(closure)

    def update(self, group, param, grad, state, step, layout):
        super().update(group, param, grad, state, self.steps, layout)
