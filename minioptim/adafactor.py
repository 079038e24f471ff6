"""Adafactor, fused, written with the public extension API only."""

from __future__ import annotations

from typing import Any

import torch

from . import _checks, _docs
from .base import FusedOptimizer, Params
from .layout import Layout
from .precision import Precision
from .state import State


def factored(shape: torch.Size) -> bool:
    """Adafactor factors the second moment of tensors with two or more dimensions."""
    return len(shape) > 1


@_docs.fill
class Adafactor(FusedOptimizer):
    r"""Fused Adafactor: a drop-in for ``torch.optim.Adafactor`` (same arguments, defaults,
    state names and checkpoints).

    The second moment of a matrix :math:`G \in \mathbb{R}^{n \times m}` is kept as a row
    factor :math:`R` (``row_var``, shape ``(n, 1)``) and a column factor :math:`C`
    (``col_var``, shape ``(1, m)``), :math:`n + m` numbers instead of :math:`nm`; tensors
    of more dimensions are factored over their last two, vectors and scalars keep a full
    ``variance``. At step :math:`t`, with :math:`\hat\beta_t = 1 - t^{\tau}`
    (``beta2_decay`` :math:`= \tau`):

    .. math::

        R &\leftarrow \hat\beta_t R + (1-\hat\beta_t)\,\mathrm{mean}_{\text{cols}}(G^2), \\
        C &\leftarrow \hat\beta_t C + (1-\hat\beta_t)\,\mathrm{mean}_{\text{rows}}(G^2), \\
        \hat V &= \frac{R\,C}{\max(\mathrm{mean}(R), \epsilon_1)},
        \qquad U = \frac{G}{\max(\sqrt{\hat V}, \epsilon_1)}, \\
        \hat U &= \frac{U}{\max(1, \mathrm{RMS}(U)/d)},
        \qquad \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta))\,\min(\eta, 1/\sqrt{t}), \\
        \theta &\leftarrow \theta(1 - \eta\lambda) - \alpha_t \hat U,

    with :math:`\alpha_t` computed before the decay. The update runs per shape: all
    parameters of one shape are one batched tensor (:meth:`minioptim.Layout.by_shape`),
    and their row and column factors are batched alike (``layout.of("row_var")``). The
    class is the worked example of state that only some parameters keep
    (``State(when=...)``).

    Parameters
    ----------
    {params}
    lr, beta2_decay, eps, d, weight_decay, maximize:
        As in ``torch.optim.Adafactor``, with the same defaults: ``lr=1e-2``,
        ``beta2_decay=-0.8``, ``eps=(None, 1e-3)`` (:math:`\epsilon_1` ``None``: the
        dtype's machine epsilon), ``d=1.0``, ``weight_decay=0.0``. {tensor_lr}
    foreach:
        Accepted for compatibility with torch.optim; changes nothing.
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> model = torch.nn.Linear(4, 3)
    >>> optimizer = minioptim.Adafactor(model.parameters(), lr=1e-2)
    >>> model(torch.ones(2, 4)).sum().backward()
    >>> optimizer.step()
    >>> sorted(optimizer.state[model.weight])
    ['col_var', 'row_var', 'step']
    >>> sorted(optimizer.state[model.bias])
    ['step', 'variance']

    References
    ----------
    Shazeer and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    ICML 2018.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
        )
        super().__init__(
            params,
            defaults,
            impl=impl,
            max_grad_norm=max_grad_norm,
            precision=precision,
            capturable=capturable,
        )

    def check_group(self, group: dict[str, Any]) -> None:
        _checks.non_negative(group, "lr", "weight_decay")
        if not _checks.number(group, "beta2_decay") <= 0:
            raise ValueError(f"beta2_decay must be <= 0, got {group['beta2_decay']}")
        eps1, eps2 = group["eps"]
        if eps1 is not None and not _checks.number(group, "eps[0]", eps1) >= 0:
            raise ValueError(f"eps[0] must be None or >= 0, got {eps1}")
        if not _checks.number(group, "eps[1]", eps2) >= 0:
            raise ValueError(f"eps[1] must be >= 0, got {eps2}")
        if not _checks.number(group, "d") >= 1:
            raise ValueError(f"d (the clipping threshold) must be >= 1, got {group['d']}")

    def state_names(self, group: dict[str, Any]) -> tuple[State, ...]:
        return (
            State("row_var", shape=lambda s: (*s[:-1], 1), when=factored),
            State("col_var", shape=lambda s: (*s[:-2], 1, s[-1]), when=factored),
            State("variance", when=lambda s: not factored(s)),
        )

    def update(self, group, param, grad, state, step, layout: Layout) -> None:
        lr, decay, d = float(group["lr"]), group["weight_decay"], group["d"]
        eps1, eps2 = group["eps"]
        eps1 = torch.finfo(param.dtype).eps if eps1 is None else eps1
        g = grad.neg() if group["maximize"] else grad
        weight = step ** group["beta2_decay"]  # 1 - beta2_t
        alpha = layout.rms(param).clamp_(min=eps2) * min(lr, step**-0.5)  # one per param
        if decay != 0:
            param.mul_(1 - lr * decay)
        u = torch.empty_like(param)  # the variance estimate, then the update U
        rows, cols, full = layout.of("row_var"), layout.of("col_var"), layout.of("variance")
        for shape, indices, g_batch in layout.by_shape(g):
            estimate = layout.batch(u, indices)
            if factored(shape):
                r = rows.batch(state["row_var"], indices)
                c = cols.batch(state["col_var"], indices)
                r.lerp_(g_batch.square().mean(dim=-1, keepdim=True), weight)
                c.lerp_(g_batch.square().mean(dim=-2, keepdim=True), weight)
                torch.matmul(r, c, out=estimate)
                estimate.div_(r.mean(dim=-2, keepdim=True).clamp_(min=eps1))
            else:
                v = full.batch(state["variance"], indices)
                v.lerp_(g_batch.square(), weight)
                estimate.copy_(v)
        u.clamp_(min=eps1 * eps1).rsqrt_().mul_(g)
        scale = alpha / (layout.rms(u) / d).clamp_(min=1.0)
        param.sub_(layout.expand(scale) * u)
