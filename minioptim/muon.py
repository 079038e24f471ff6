"""Muon, fused: orthogonalized momentum for the weight matrices of hidden layers."""

from __future__ import annotations

from typing import Any

from . import _checks, _docs
from .base import FLOAT_DTYPES, FusedOptimizer, Params
from .functional import fused_muon_, muon_
from .precision import Precision
from .rule import Rule

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


@_docs.fill
class Muon(FusedOptimizer):
    r"""Fused Muon: a drop-in for ``torch.optim.Muon`` (same arguments and defaults).

    The rule is :func:`minioptim.functional.muon_`: momentum
    :math:`B \leftarrow \mu B + (1-\mu) g` (Nesterov by default), orthogonalized per
    matrix by five Newton–Schulz steps (:func:`~minioptim.functional.newton_schulz`),
    decoupled weight decay, and a per-shape learning rate
    (:func:`~minioptim.functional.muon_lr`). This is steepest descent under the spectral
    norm: the update :math:`\approx UV^\top` has every singular value near 1.

    Muon is for 2-d weight matrices only and, like torch, refuses other parameters.
    Optimize biases, norms, embeddings and the output layer with AdamW, in a second
    optimizer::

        hidden = [p for p in model.body.parameters() if p.ndim == 2]
        ids = {id(p) for p in hidden}
        others = [p for p in model.parameters() if id(p) not in ids]
        muon = minioptim.Muon(hidden, lr=0.02)
        adamw = minioptim.AdamW(others, lr=3e-4)
        # each step: loss.backward(); muon.step(); adamw.step()

    Under FSDP2 (``fully_shard``) nothing changes for the user: each step every matrix
    is gathered to one owner process, orthogonalized there once and scattered back
    (:mod:`minioptim.sharded_muon`), which gives the numbers of one process.

    The fast path (default) orthogonalizes all matrices of one shape with one batched
    chain of ``baddbmm`` calls: the buffer stores same-shaped matrices next to each other,
    so they are one ``(k, A, B)`` view (:meth:`minioptim.Layout.by_shape`). It agrees with
    the reference (one chain per matrix, torch.optim's operations) to bfloat16 rounding.

    Parameters
    ----------
    {params} Every parameter must be 2-d.
    lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn:
        As in ``torch.optim.Muon``, with the same defaults: ``lr=1e-3``,
        ``weight_decay=0.1``, ``momentum=0.95``, ``nesterov=True``, ``ns_coefficients=
        (3.4445, -4.7750, 2.0315)``, ``eps=1e-7``, ``ns_steps=5``, ``adjust_lr_fn=None``
        (``"original"``: :math:`\sqrt{\max(1, A/B)}`; ``"match_rms_adamw"``:
        :math:`0.2\sqrt{\max(A, B)}`). {tensor_lr}
    {impl}
    {max_grad_norm}
    {precision}
    {capturable}

    Examples
    --------
    >>> weights = [torch.randn(32, 16, requires_grad=True)]
    >>> optimizer = minioptim.Muon(weights, lr=0.02)

    References
    ----------
    Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024,
    https://kellerjordan.github.io/posts/muon/.
    Bernstein and Newhouse, "Old Optimizer, New Norm: An Anthology", 2024.
    Liu et al., "Muon is Scalable for LLM Training", 2025 (``match_rms_adamw``).
    """

    step_in_state = False  # torch.optim.Muon keeps only 'momentum_buffer'
    handles_shards = True  # under FSDP2: minioptim.sharded_muon
    rule = Rule(muon_, fast=fused_muon_)
    # The fast path runs the reference's operations, batched: right for every dtype.
    fast_dtypes = FLOAT_DTYPES

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
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
        _checks.non_negative(group, "lr", "weight_decay", "momentum", "eps")
        if group["adjust_lr_fn"] not in ADJUST_LR_FNS:
            raise ValueError(
                f"adjust_lr_fn must be one of {ADJUST_LR_FNS}, got {group['adjust_lr_fn']!r}"
            )
        coefficients = group["ns_coefficients"]
        if not isinstance(coefficients, tuple | list) or len(coefficients) != 3:
            raise ValueError(
                f"ns_coefficients must be three numbers (a, b, c), got {coefficients!r}"
            )
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < 100:
            raise ValueError(f"ns_steps must be an integer in [0, 100), got {steps!r}")
        for i, p in enumerate(group["params"]):
            p = p[1] if isinstance(p, tuple) else p
            if p.ndim != 2:
                raise ValueError(
                    f"Muon optimizes 2-d weight matrices only, but params[{i}] has shape "
                    f"{tuple(p.shape)}. Give biases, norms and embeddings to a second "
                    "optimizer, e.g. minioptim.AdamW (the recipe is in Muon's docstring)"
                )
            if p.shape[1] == 0 and group["adjust_lr_fn"] != "match_rms_adamw":
                raise ValueError(
                    f"params[{i}] has shape {tuple(p.shape)}: no columns, so Muon's learning "
                    "rate scale sqrt(max(1, rows / columns)) is undefined (torch.optim.Muon "
                    "raises ZeroDivisionError). Leave empty matrices out of the parameters"
                )

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",)
