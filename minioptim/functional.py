r"""The update rules as plain in-place functions on tensors.

These are the *reference* path: each function is the textbook rule, written with the same
sequence of tensor operations as ``torch.optim``'s for-loop implementation
(``foreach=False``), so it gives the same numbers. The optimizer classes call them on whole
flat buffers; they work just as well on a single parameter.

The *fast* path (``fused_*``) computes the same rule with fewer passes over memory.
"""

from __future__ import annotations

import functools
import math

import torch

from . import sharded_muon
from .layout import Layout
from .sharded import ShardedLayout

#: Elements per block in the blocked fast paths: big enough to amortise Python overhead,
#: small enough that a block's temporaries stay in the CPU's cache (1 MiB of float32).
#: Measured on a 2-core CPU, SignSGD on 14M parameters: 2**16: 14.4 ms, 2**18: 11.6 ms,
#: 2**20: 13.7 ms, whole buffer at once: 24.6 ms.
BLOCK = 1 << 18


def clip_grad_norm_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    r"""Scale gradients to a total norm of at most ``max_norm``; return the norm before.

    .. math::

        N = \Big(\sum_i \lVert g_i \rVert_2^2\Big)^{1/2}, \qquad
        g_i \leftarrow g_i \cdot \min\Big(1, \frac{\text{max\_norm}}{N + 10^{-6}}\Big)

    as ``torch.nn.utils.clip_grad_norm_`` computes it (the norm of the per-tensor norms);
    here each :math:`g_i` is a flat slice of many parameters, so it is one reduction per
    slice, and the result agrees with torch's to float rounding.
    """
    device = grads[0].device
    norms = torch.stack([torch.linalg.vector_norm(g).to(device) for g in grads])
    total = torch.linalg.vector_norm(norms)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:  # one slice per bucket and run: a handful
        g.mul_(scale.to(g.device))
    return total


def sgd_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor | None = None,
    *,
    step: int,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    .. math::

        g &\leftarrow -g \quad\text{if maximize} \\
        g &\leftarrow g + \lambda\, p \\
        b &\leftarrow \begin{cases} g & t = 1 \\
                                    \mu\, b + (1 - \tau)\, g & \text{after} \end{cases} \\
        g &\leftarrow \begin{cases} g + \mu\, b & \text{nesterov} \\
                                    b & \text{otherwise} \end{cases} \\
        p &\leftarrow p - \eta\, g

    with learning rate :math:`\eta`, momentum :math:`\mu`, dampening :math:`\tau` and
    weight decay :math:`\lambda`, at step :math:`t` (``step``, 1 on the first update).
    Without momentum, ``momentum_buffer`` may be ``None``. Without dampening the first
    step needs no case of its own (:math:`b = 0` before it, so :math:`\mu b + g = g`),
    which is what lets a ``step`` on the device be captured (``capturable=True``).
    """
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    if momentum != 0:
        if dampening != 0 and step == 1:
            momentum_buffer.copy_(grad)
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    param.add_(grad, alpha=-lr)


def adam_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None = None,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    r"""Adam, and AdamW when ``decoupled_weight_decay``, as ``torch.optim.Adam``/``AdamW``.

    .. math::

        g &\leftarrow -g \quad\text{if maximize} \\
        p &\leftarrow p\,(1 - \eta\lambda) \quad\text{(AdamW)}
           \qquad\text{or}\qquad g \leftarrow g + \lambda p \quad\text{(Adam)} \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \quad\text{if amsgrad, else } \hat v = v \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
              \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    where :math:`t` is ``step`` (1 on the first update), ``betas`` is
    :math:`(\beta_1, \beta_2)` and :math:`m, v` start at zero. ``lr`` and the betas may be
    0-d tensors, as in torch.optim.
    """
    beta1, beta2 = betas
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    # torch.optim moves a tensor beta1 to the parameter's device and dtype for this one
    # operation (the bias correction below uses it as given); so do we, for equal numbers.
    if isinstance(beta1, torch.Tensor):
        exp_avg.lerp_(grad, 1 - beta1.to(param.device, param.dtype))
    else:
        exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    if amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    else:
        second_moment = exp_avg_sq
    denom = second_moment.sqrt().div_(bias_correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


def sign_sgd_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor | None = None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    r"""signSGD, and Signum when ``momentum > 0``.

    .. math::

        g &\leftarrow -g \quad\text{if maximize} \\
        u &\leftarrow \begin{cases} g & \mu = 0 \text{ (signSGD)} \\
             m \leftarrow \mu\, m + (1 - \mu)\, g,\; u = m & \mu > 0 \text{ (Signum)}
             \end{cases} \\
        p &\leftarrow p\,(1 - \eta\lambda) - \eta\, \operatorname{sign}(u)

    with :math:`m_0 = 0` and :math:`\operatorname{sign}(0) = 0`: a zero gradient (with no
    momentum) moves a parameter only by its weight decay.
    """
    if maximize:
        grad = -grad
    direction = grad
    if momentum != 0:
        momentum_buffer.mul_(momentum).add_(grad, alpha=1 - momentum)
        direction = momentum_buffer
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    param.add_(torch.sign(direction), alpha=-lr)


def lion_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    *,
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    maximize: bool,
) -> None:
    r"""Lion (Chen et al., 2023): the sign of an interpolation, and a slower momentum.

    .. math::

        g &\leftarrow -g \quad\text{if maximize} \\
        c &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        p &\leftarrow p\,(1 - \eta\lambda) - \eta\, \operatorname{sign}(c) \\
        m &\leftarrow \beta_2 m + (1 - \beta_2)\, g

    with :math:`m_0 = 0`. With :math:`\beta_1 = \beta_2` this is Signum with decoupled
    weight decay; Lion's default :math:`\beta_1 = 0.9 < \beta_2 = 0.99` lets the current
    gradient weigh more in the step than in the momentum it keeps.
    """
    beta1, beta2 = betas
    if maximize:
        grad = -grad
    direction = torch.lerp(exp_avg, grad, 1 - beta1).sign_()
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    param.add_(direction, alpha=-lr)
    exp_avg.lerp_(grad, 1 - beta2)


def newton_schulz(
    matrices: torch.Tensor,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    r"""Orthogonalize a matrix, or a batch of them, with the quintic Newton–Schulz iteration.

    .. math::

        X_0 &= G / \max(\lVert G \rVert_F, \epsilon), \\
        A &= X_k X_k^\top, \\
        X_{k+1} &= a X_k + (b A + c A^2)\, X_k

    in ``dtype`` (bfloat16 by default, as torch.optim.Muon; float64 to study the iteration
    itself), on the wide orientation (rows <= columns). Each step maps every singular
    value :math:`\sigma` of :math:`X` to :math:`a\sigma + b\sigma^3 + c\sigma^5`; the
    default coefficients push all of them towards 1 (to roughly 0.7–1.2, not exactly 1),
    so the result is close to :math:`UV^\top` for :math:`G = U\Sigma V^\top`. The same
    operations as ``torch.optim.Muon``'s, batched over a leading dimension.
    """
    a, b, c = coefficients
    x = matrices.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    if x.dim() == 2:
        x = x.div(x.norm().clamp(min=eps))
        addmm = torch.addmm
    else:  # a batch: the same operations, one kernel each for all matrices
        x = x.div(torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=eps))
        addmm = torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        poly = addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = addmm(x, poly, x, beta=a)  # a X + (b A + c A^2) X
    return x.mT if tall else x


def muon_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    r"""Muon's per-matrix learning rate for a matrix of shape :math:`A \times B`.

    ``None``/``"original"``: :math:`\eta \sqrt{\max(1, A/B)}` (Jordan et al.);
    ``"match_rms_adamw"``: :math:`0.2\, \eta \sqrt{\max(A, B)}` (Liu et al., 2025), which
    gives updates the RMS of AdamW's so AdamW's learning rate and weight decay carry over.
    """
    rows, cols = shape[-2:]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    return lr * (0.2 * math.sqrt(max(rows, cols)))  # torch.optim's rounding order


def muon_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor,
    *,
    layout: Layout,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: tuple[float, float, float],
    eps: float,
    ns_steps: int,
    adjust_lr_fn: str | None,
) -> None:
    r"""Muon, as ``torch.optim.Muon``: orthogonalized momentum for weight matrices.

    .. math::

        B &\leftarrow \mu B + (1 - \mu)\, g \\
        U &\leftarrow \begin{cases} (1 - \mu)\, g + \mu B & \text{nesterov} \\
                                    B & \text{otherwise} \end{cases} \\
        p &\leftarrow p\,(1 - \eta\lambda) - \eta_{A \times B}\, \mathrm{NS}(U)

    per matrix, with :func:`newton_schulz` and :func:`muon_lr`. The momentum runs on the
    whole flat slice; the orthogonalization needs each matrix's shape, so it loops over
    ``layout`` (the readable reference; :func:`fused_muon_` batches same-shaped matrices).
    """
    direction = _muon_momentum_(param, grad, momentum_buffer, lr, weight_decay, momentum, nesterov)
    orthogonalize = functools.partial(
        newton_schulz, coefficients=ns_coefficients, steps=ns_steps, eps=eps
    )
    for shape, p, orthogonal in _orthogonalized(param, direction, layout, orthogonalize, False):
        p.add_(orthogonal, alpha=-muon_lr(lr, adjust_lr_fn, shape))


def _muon_momentum_(param, grad, momentum_buffer, lr, weight_decay, momentum, nesterov):
    """Muon's element-wise part, on the whole flat slice: momentum, then decay; returns U."""
    momentum_buffer.lerp_(grad, 1 - momentum)
    direction = grad.lerp(momentum_buffer, momentum) if nesterov else momentum_buffer
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    return direction


def _orthogonalized(param, direction, layout, orthogonalize, batched):
    """``(shape, p, NS(U))`` for each matrix of the slice, or each same-shaped batch.

    Under FSDP2 (a :class:`~minioptim.sharded.ShardedLayout`) ``p`` and ``NS(U)`` are
    this process's rows, and each matrix is orthogonalized once, on one process
    (:func:`minioptim.sharded_muon.orthogonalized`).
    """
    if isinstance(layout, ShardedLayout):
        yield from sharded_muon.orthogonalized(param, direction, layout, orthogonalize, batched)
    elif batched:
        for (shape, _, p), (_, _, u) in zip(
            layout.by_shape(param), layout.by_shape(direction), strict=True
        ):
            yield shape, p, orthogonalize(u)
    else:
        for p, u in zip(layout.views(param), layout.views(direction), strict=True):
            yield p.shape, p, orthogonalize(u)


# -- fast paths -------------------------------------------------------------------------------
#
# On a flat buffer, torch's own fused kernels (the ones behind `fused=True`) run the whole
# update in one pass over memory: one kernel launch for the bucket instead of one per tensor.
# They take Python numbers; a tensor hyper-parameter is read once per step.


def _numbers(hyper: dict) -> dict:
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in hyper.items()}


def _wrote(param: torch.Tensor) -> None:
    """Tell autograd that ``param`` changed in place: torch's fused kernels do not bump
    version counters, unlike every other in-place operation (``param.add_`` does)."""
    torch.autograd.graph.increment_version(param)


def fused_sgd_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor | None = None,
    *,
    step: int,
    **hyper: float,
) -> None:
    """:func:`sgd_` in one pass, with torch's fused SGD kernel (same arguments)."""
    torch._fused_sgd_(
        [param],
        [grad],
        [momentum_buffer] if hyper["momentum"] != 0 else [],
        is_first_step=hyper["dampening"] != 0 and bool(step == 1),  # as in sgd_
        **_numbers(hyper),  # lr, momentum, dampening, weight_decay, nesterov, maximize
    )
    _wrote(param)


def fused_adam_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None = None,
    *,
    step: int,
    betas: tuple[float, float],
    decoupled_weight_decay: bool,
    **hyper: float,
) -> None:
    """:func:`adam_` in one pass, with torch's fused Adam/AdamW kernel (same arguments)."""
    kernel = torch._fused_adamw_ if decoupled_weight_decay else torch._fused_adam_
    beta1, beta2 = (float(beta) for beta in betas)
    # A step on the device (capturable=True) as it is; else torch.full, not torch.tensor:
    # on a GPU it launches a fill instead of copying from host memory, so the step never
    # waits for the device.
    if not isinstance(step, torch.Tensor):
        step = torch.full((), float(step), device=param.device)
    kernel(
        [param],
        [grad],
        [exp_avg],
        [exp_avg_sq],
        [max_exp_avg_sq] if hyper["amsgrad"] else [],
        [step],
        beta1=beta1,
        beta2=beta2,
        **_numbers(hyper),  # lr, eps, weight_decay, amsgrad, maximize
    )
    _wrote(param)


def _blocks(flat: torch.Tensor) -> list[slice]:
    """The blocks a blocked fast path walks: cache-sized on a CPU, the whole slice elsewhere.

    On a GPU each block costs kernel launches and nothing is gained from a cache-sized
    temporary, so the slice is one block.
    """
    size = BLOCK if flat.device.type == "cpu" else max(flat.numel(), 1)
    return [slice(start, start + size) for start in range(0, flat.numel(), size)]


def fused_sign_sgd_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor | None = None,
    **hyper: float,
) -> None:
    """:func:`sign_sgd_` block by block, so that ``sign(u)`` never needs a full-size temporary.

    torch has no fused sign kernel. Running the rule on blocks of :data:`BLOCK` elements
    keeps each block's temporary in cache and the extra memory to one block. The
    arguments are those of :func:`sign_sgd_`.
    """
    for block in _blocks(param):
        buffer = momentum_buffer[block] if momentum_buffer is not None else None
        sign_sgd_(param[block], grad[block], buffer, **hyper)


def fused_lion_(
    param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, **hyper: float
) -> None:
    """:func:`lion_` block by block, like :func:`fused_sign_sgd_` (same arguments)."""
    for block in _blocks(param):
        lion_(param[block], grad[block], exp_avg[block], **hyper)


def fused_muon_(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor,
    *,
    layout: Layout,
    **hyper: float,
) -> None:
    """:func:`muon_` with one batched Newton–Schulz chain per shape (same arguments).

    The bucket stores same-shaped matrices next to each other, so ``layout.by_shape``
    gives each shape's matrices as one ``(k, A, B)`` view: ``k`` matrices cost one
    ``baddbmm`` chain instead of ``k`` ``addmm`` chains.
    """
    lr = hyper["lr"]
    element_wise = (hyper[k] for k in ("weight_decay", "momentum", "nesterov"))
    direction = _muon_momentum_(param, grad, momentum_buffer, lr, *element_wise)
    orthogonalize = functools.partial(
        newton_schulz,
        coefficients=hyper["ns_coefficients"],
        steps=hyper["ns_steps"],
        eps=hyper["eps"],
    )
    for shape, p, orthogonal in _orthogonalized(param, direction, layout, orthogonalize, True):
        p.add_(orthogonal, alpha=-muon_lr(lr, hyper["adjust_lr_fn"], shape))
