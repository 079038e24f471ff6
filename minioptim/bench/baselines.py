"""torch-style baselines for the optimizers torch.optim lacks: Signum (SignSGD) and Lion.

Written as torch.optim writes its own: a for-loop over tensors (``foreach=False``) or one
``torch._foreach_*`` kernel per operation over the lists of tensors (``foreach=True``),
with the rules of :func:`minioptim.functional.sign_sgd_` and
:func:`minioptim.functional.lion_`. They are what a user would get without minioptim.
"""

from __future__ import annotations

import torch


class _ListOptimizer(torch.optim.Optimizer):
    """Collects each group's parameters, gradients and one state buffer per parameter."""

    def __init__(self, params, defaults: dict, foreach: bool) -> None:
        super().__init__(params, dict(defaults, foreach=foreach))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            buffers = [self._buffer(p) for p in params]
            update = self._foreach if group["foreach"] else self._for_loop
            update(params, grads, buffers, group)

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"]


class Signum(_ListOptimizer):
    r""":math:`m \leftarrow \mu m + (1-\mu) g`, :math:`p \leftarrow p(1-\eta\lambda)
    - \eta\operatorname{sign}(m)`: SignSGD with momentum, as ``minioptim.SignSGD``."""

    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0, *, foreach=True):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay), foreach)

    @staticmethod
    def _for_loop(params, grads, buffers, group):
        lr, decay = group["lr"], group["weight_decay"]
        for p, g, m in zip(params, grads, buffers, strict=True):
            m.lerp_(g, 1 - group["momentum"])
            if decay:
                p.mul_(1 - lr * decay)
            p.add_(m.sign(), alpha=-lr)

    @staticmethod
    def _foreach(params, grads, buffers, group):
        lr, decay = group["lr"], group["weight_decay"]
        torch._foreach_lerp_(buffers, grads, 1 - group["momentum"])
        if decay:
            torch._foreach_mul_(params, 1 - lr * decay)
        torch._foreach_add_(params, torch._foreach_sign(buffers), alpha=-lr)


class Lion(_ListOptimizer):
    r""":math:`p \leftarrow p(1-\eta\lambda) - \eta\operatorname{sign}(\beta_1 m +
    (1-\beta_1) g)`, then :math:`m \leftarrow \beta_2 m + (1-\beta_2) g`, as
    ``minioptim.Lion``."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, foreach=True):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay), foreach)

    @staticmethod
    def _for_loop(params, grads, buffers, group):
        (beta1, beta2), lr, decay = group["betas"], group["lr"], group["weight_decay"]
        for p, g, m in zip(params, grads, buffers, strict=True):
            direction = torch.lerp(m, g, 1 - beta1).sign_()
            if decay:
                p.mul_(1 - lr * decay)
            p.add_(direction, alpha=-lr)
            m.lerp_(g, 1 - beta2)

    @staticmethod
    def _foreach(params, grads, buffers, group):
        (beta1, beta2), lr, decay = group["betas"], group["lr"], group["weight_decay"]
        directions = torch._foreach_lerp(buffers, grads, 1 - beta1)
        torch._foreach_sign_(directions)
        if decay:
            torch._foreach_mul_(params, 1 - lr * decay)
        torch._foreach_add_(params, directions, alpha=-lr)
        torch._foreach_lerp_(buffers, grads, 1 - beta2)
