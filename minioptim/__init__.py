"""minioptim: fused SGD, Adam/AdamW and SignSGD for PyTorch, a drop-in for torch.optim.

All parameters of a param group (per device and dtype) live in one contiguous buffer;
each ``p.data`` and ``p.grad`` is a view into it, so ``zero_grad()`` is one fill and every
update is a handful of vectorized operations over the whole buffer.
"""

from .adam import Adam, AdamW
from .base import FusedOptimizer
from .sgd import SGD
from .sign_sgd import SignSGD

__version__ = "0.1.0"
__all__ = ["SGD", "Adam", "AdamW", "SignSGD", "FusedOptimizer", "__version__"]
