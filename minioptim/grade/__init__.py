r"""The course's grader: your optimizers, step by step, against torch.optim and references.

In a notebook, pass your classes by name (or pass a module, or ``globals()``)::

    from minioptim.grade import grade
    grade("assignment1", MomentumSGD=MomentumSGD)

From the shell, with your classes in a file::

    python -m minioptim.grade assignment1 my_optimizers.py

Both print one line per check, PASS or FAIL. A failure says which step, which parameter
and which state entry diverged first and by how much, and gives a hint. In a notebook,
``grade`` ends by raising a one-line :class:`GradingFailed` if any check failed; from the
shell the exit status is 1. To look at the numbers yourself, :func:`compare` prints the
differences of every entry at every step.

How a check works
-----------------
Your optimizer and a reference are built on copies of the same float64 parameters
(:func:`make_tensors`: shapes (4, 3), (3,) and (2, 2, 3); the (3,) one starts at zero,
like a bias). For ``STEPS`` steps both get the same standard normal gradients, take one
``step()``, and then every parameter and every state entry must agree within
``rtol=RTOL, atol=ATOL`` (``minioptim.testing.assert_same_trajectory``). Float64 and
30 steps leave no room for a mistake to hide: a wrong order of operations, a missing
factor or a misplaced ``eps`` shows up, even where it changes the first step by a
millionth. Variants of a check give a parameter no gradient for its first steps (its
first update then comes later, with ``step == 1``), give every parameter a zero first
gradient (a buffer still zero after a step is no sign of the first one), start one
parameter 100 times larger (LAMB's trust ratio above 10), use two param groups, or
continue from a checkpoint. The per-step ``step`` entries must be equal exactly.

How a hint is found
-------------------
1. An error your optimizer raised is named with its message; the guardrails of
   :class:`~minioptim.FusedOptimizer` (state replaced, parameters not updated in place,
   the gradient changed, ...) come with what to write instead. So do tensors kept in
   attributes of your own beside the optimizer's state (a dict keyed by ``id(param)``).
2. Typical mistakes: for each optimizer :mod:`~minioptim.grade.loops` has a per-tensor
   loop (:class:`LoopSGD`, :class:`LoopRMSprop`, :class:`LoopAdagrad`, :class:`LoopLAMB`) that
   can make each typical mistake on purpose (``mistake="eps_inside_sqrt"``; the list is
   each class's ``mistakes``). If your optimizer follows one of them step for step, the
   hint names that mistake.
3. Variants: if the same check passes once one hyper-parameter is switched off (say
   ``nesterov=False``), or without the variant (from scratch instead of from a
   checkpoint), the hint points there.
4. Otherwise the hint says what diverged first: a state entry kept by only one of
   them (the state names), a state entry at the first update (its formula or initial
   value), a state entry later (its recursion, or the order of operations), or the
   parameters, when they differ before any state entry (the step itself).

The package: :mod:`~minioptim.grade.trajectories` (the tensors, gradients and
tolerance), :mod:`~minioptim.grade.loops` (the references with their typical
mistakes), :mod:`~minioptim.grade.specs` (what is known of each optimizer),
:mod:`~minioptim.grade.checks` (the checks), :mod:`~minioptim.grade.hints` (the
explanations), :mod:`~minioptim.grade.assignments`, :mod:`~minioptim.grade.report`,
:mod:`~minioptim.grade.grading` (:func:`run`, :func:`grade`, :func:`compare`) and
:mod:`~minioptim.grade.cli` (the command line).

The formulas checked
--------------------
Notation: parameter :math:`p`, gradient :math:`g`, :math:`t` = ``step`` (1 at a
parameter's first update), learning rate :math:`\eta`. Every line is elementwise.

**Assignment 1**, ``MomentumSGD(params, lr=1e-3, momentum=0, dampening=0,
weight_decay=0, nesterov=False)``, checked against ``torch.optim.SGD``::

    g ← g + λ·p                        weight_decay λ (coupled: before the buffer)
    b ← g                              at t = 1
    b ← μ·b + (1 − τ)·g                at t > 1 (momentum μ, dampening τ)
    d ← g + μ·b  if nesterov, else d ← b        (d = g when μ = 0)
    p ← p − η·d

State: ``momentum_buffer`` (only when μ ≠ 0), no ``step`` entry (``step_in_state =
False``). ``check_group`` raises ``ValueError`` with the argument's name in the message
when lr < 0, μ ∉ [0, 1), τ ∉ [0, 1], λ < 0, or nesterov with μ = 0 or τ ≠ 0.

**Assignment 2**, ``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
momentum=0, centered=False)``, checked against ``torch.optim.RMSprop``::

    g ← g + λ·p
    v ← α·v + (1 − α)·g²                           state square_avg
    ḡ ← α·ḡ + (1 − α)·g                            state grad_avg (centered only)
    s ← √(v − ḡ²) + ε  if centered, else s ← √v + ε
    b ← μ·b + g / s,  p ← p − η·b                  state momentum_buffer (μ > 0)
    p ← p − η·g / s                                 (μ = 0)

``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
eps=1e-10)``, checked against ``torch.optim.Adagrad``::

    g ← g + λ·p
    S ← S + g²                                      state sum, S₀ = initial_accumulator_value
    p ← p − η / (1 + (t − 1)·δ) · g / (√S + ε)     lr_decay δ

Both keep a ``step`` entry. Both must continue from ``torch.optim``'s checkpoint
(``load_state_dict``) exactly as ``torch.optim`` does, and ``torch.optim`` from theirs.

**Assignment 3**, ``LAMB(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
weight_decay=0.01)``, checked against :class:`LoopLAMB` (You et al., 2020, with bias
correction and decoupled weight decay inside the trust ratio)::

    m ← β₁·m + (1 − β₁)·g                          state exp_avg
    v ← β₂·v + (1 − β₂)·g²                         state exp_avg_sq
    m̂ ← m / (1 − β₁ᵗ),  v̂ ← v / (1 − β₂ᵗ)
    r ← m̂ / (√v̂ + ε) + λ·p
    for each parameter tensor i:  q_i ← ‖p_i‖ / ‖r_i‖ if both norms > 0, else 1
    p_i ← p_i − η·q_i·r_i

with Euclidean (Frobenius) norms over each tensor, computed without a Python loop over
the parameters: the number of tensor operations in one ``update`` must not grow with
the number of parameters (counted as in lecture 5), nor the number of tensor elements
turned into Python numbers (``tolist``, ``item``, ``numpy``, ``float``). State:
``exp_avg``, ``exp_avg_sq``, ``trust`` (``State("trust", shape=())``: each tensor's
last q_i) and ``step``.
"""

from __future__ import annotations

from .assignments import ASSIGNMENTS, Assignment
from .checks import CountOps, Fused, Trajectory, Validation
from .cli import load_file, main
from .grading import compare, grade, run
from .hints import GENERAL_HINTS
from .loops import LoopAdagrad, LoopLAMB, LoopOptimizer, LoopRMSprop, LoopSGD
from .report import WIDTH, GradingFailed, Report, Result
from .specs import ADAGRAD_SPEC, LAMB_SPEC, RMSPROP_SPEC, SGD_SPEC, Spec
from .trajectories import ATOL, RTOL, STEPS, make_tensors, trace

__all__ = [
    "ADAGRAD_SPEC",
    "ASSIGNMENTS",
    "ATOL",
    "GENERAL_HINTS",
    "LAMB_SPEC",
    "RMSPROP_SPEC",
    "RTOL",
    "SGD_SPEC",
    "STEPS",
    "WIDTH",
    "Assignment",
    "CountOps",
    "Fused",
    "GradingFailed",
    "LoopAdagrad",
    "LoopLAMB",
    "LoopOptimizer",
    "LoopRMSprop",
    "LoopSGD",
    "Report",
    "Result",
    "Spec",
    "Trajectory",
    "Validation",
    "compare",
    "grade",
    "load_file",
    "main",
    "make_tensors",
    "run",
    "trace",
]
