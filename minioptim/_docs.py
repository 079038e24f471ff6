"""Docstring paragraphs shared by the optimizer classes, written once (as torch.optim does)."""

PARAMS = """params:
        Tensors, ``(name, tensor)`` pairs or param-group dicts, as for ``torch.optim``."""

IMPL = """impl:
        ``"auto"`` (default: the fast path; on CUDA the compiled rule, where the rule
        takes no layout), ``"reference"`` (the readable rule in
        :mod:`minioptim.functional`), ``"fast"``, or ``"compiled"`` (the readable rule
        compiled by ``torch.compile``); see :class:`~minioptim.FusedOptimizer`."""

COMPAT = """foreach, fused, differentiable:
        Accepted for compatibility with torch.optim and kept in ``param_groups``;
        ``foreach`` and ``fused`` change nothing (every update here is fused over a flat
        buffer), but what torch.optim refuses with them raises here too (both True; in
        Adam, a tensor ``lr`` or betas with ``foreach=True``); ``differentiable=True`` is
        not supported."""

MAX_GRAD_NORM = """max_grad_norm:
        If set, each step first clips the gradients of each param group to this total
        norm, as ``torch.nn.utils.clip_grad_norm_(group["params"], max_grad_norm)``
        would (to float rounding): one reduction per bucket. Default ``None``: no clipping.
        See :meth:`~minioptim.FusedOptimizer.prepare`."""

PRECISION = """precision:
        How float16/bfloat16 parameters are updated (float32 and float64 ones ignore it):
        ``"plain"`` (default; in the parameters' dtype, so an update below half a unit in
        the last place is lost), ``"master"`` (float32 master weights and state; the
        parameters get the rounded result), ``"stochastic"`` (stochastic rounding,
        unbiased, seeded, no extra memory), ``"kahan"`` (a half-precision compensation
        buffer), or a :class:`~minioptim.Precision` (seed, state dtype). See
        :mod:`minioptim.precision`."""

CAPTURABLE = """capturable:
        If True, ``step()`` can be captured in a CUDA graph after a few eager steps: step
        counts live on the parameters' device, and a float ``lr`` is captured as a
        constant (schedule a tensor ``lr`` instead). See
        :class:`~minioptim.FusedOptimizer`."""

TENSOR_LR = """``lr`` may be a Python number or a 1-element tensor, as in torch.optim."""


def fill(cls: type) -> type:
    """Class decorator: put the shared paragraphs into the docstring's ``{params}``,
    ``{impl}``, ``{max_grad_norm}``, ``{precision}``, ``{capturable}``, ``{compat}`` and
    ``{tensor_lr}``
    (plain replacement: the math keeps its braces)."""
    shared = {
        "{params}": PARAMS,
        "{impl}": IMPL,
        "{max_grad_norm}": MAX_GRAD_NORM,
        "{precision}": PRECISION,
        "{capturable}": CAPTURABLE,
        "{compat}": COMPAT,
        "{tensor_lr}": TENSOR_LR,
    }
    doc = cls.__doc__
    for field, text in shared.items():
        doc = doc.replace(field, text)
    cls.__doc__ = doc
    return cls
