"""minioptim: fused SGD, Adam/AdamW, SignSGD, Lion and Muon for PyTorch.

All parameters of a param group (per device and dtype) live in one contiguous buffer;
each ``p.data`` and ``p.grad`` is an alias into it, so ``zero_grad()`` is one fill and
every update is a handful of vectorized operations over the whole buffer. A drop-in for
torch.optim, with the same numbers.
"""

from .adafactor import Adafactor
from .adam import Adam, AdamW
from .base import FusedOptimizer
from .layout import Layout
from .lion import Lion
from .muon import Muon
from .precision import Precision
from .schedule_free import ScheduleFreeAdamW
from .sgd import SGD
from .sign_sgd import SignSGD
from .state import State

__version__ = "0.3.0"
__all__ = [
    "SGD",
    "Adafactor",
    "Adam",
    "AdamW",
    "SignSGD",
    "Lion",
    "Muon",
    "ScheduleFreeAdamW",
    "FusedOptimizer",
    "Layout",
    "Precision",
    "State",
    "__version__",
]
