"""Assignment 3, wrong: LAMB reads its hyper-parameters from self.defaults, not from the
param group, so a group without weight decay still gets it."""

from assignment3 import LAMB as Correct


class LAMB(Correct):
    def update(self, group, param, grad, state, step, layout):
        super().update(self.defaults, param, grad, state, step, layout)  # WRONG: not group
