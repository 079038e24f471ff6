"""Assignment 1, wrong: reads the hyper-parameters given to the constructor
(self.defaults), not the param group's, so a group with its own lr or momentum is
trained with the others'."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def update(self, group, param, grad, state, step):
        super().update(self.defaults, param, grad, state, step)  # WRONG: not group
