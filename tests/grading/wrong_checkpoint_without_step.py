"""Assignment 2, wrong: Adagrad leaves the step counts out of its checkpoints ("the sums
are all it needs"); torch.optim cannot continue from them."""

from assignment2 import Adagrad as Correct
from assignment2 import RMSprop  # noqa: F401  (correct; graded too)


class Adagrad(Correct):
    def state_dict(self):
        saved = super().state_dict()
        for entries in saved["state"].values():
            entries.pop("step", None)  # WRONG: the learning-rate decay needs it
        return saved
