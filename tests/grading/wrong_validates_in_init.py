"""Assignment 1, wrong: checks the hyper-parameters in __init__ instead of check_group,
so a param group added later (add_param_group) is not checked."""

from assignment1 import MomentumSGD as Correct


class MomentumSGD(Correct):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, **rest):
        hyper = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        Correct.check_group(self, dict(hyper, nesterov=rest.get("nesterov", False)))
        super().__init__(params, **hyper, **rest)

    def check_group(self, group):
        pass  # WRONG: __init__ checked the defaults; groups added later go unchecked
