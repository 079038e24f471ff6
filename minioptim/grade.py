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
first update then comes later, with ``step == 1``), use two param groups, or continue
from a checkpoint. The per-step ``step`` entries must be equal exactly.

How a hint is found
-------------------
1. An error your optimizer raised is named with its message; the guardrails of
   :class:`~minioptim.FusedOptimizer` (state replaced, parameters not updated in place,
   ...) come with what to write instead.
2. Typical mistakes: for each optimizer this module has a per-tensor loop
   (:class:`LoopSGD`, :class:`LoopRMSprop`, :class:`LoopAdagrad`, :class:`LoopLAMB`) that
   can make each typical mistake on purpose (``mistake="eps_inside_sqrt"``; the list is
   each class's ``mistakes``). If your optimizer follows one of them step for step, the
   hint names that mistake.
3. Variants: if the same check passes once one hyper-parameter is switched off (say
   ``nesterov=False``), or without the variant (from scratch instead of from a
   checkpoint), the hint points there.
4. Otherwise the hint says what diverged first: a state entry at the first update (its
   formula or initial value), a state entry later (its recursion, or the order of
   operations), or the parameters, when they differ before any state entry (the step
   itself).

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
the number of parameters (counted as in lecture 5). State: ``exp_avg``, ``exp_avg_sq``,
``trust`` (``State("trust", shape=())``: each tensor's last q_i) and ``step``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import math
import re
import sys
import sysconfig
import textwrap
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .base import FusedOptimizer
from .testing import assert_same_trajectory, leaf_copies, random_gradient, set_gradient

STEPS = 30
RTOL = 1e-9
ATOL = 1e-12
SEED = 0
SHAPES = ((4, 3), (3,), (2, 2, 3))
LATE = 1  # in the "late" variant, parameter 1 gets no gradient ...
LATE_STEPS = 4  # ... for its first 4 steps: its first update is at step 5
CHECKPOINT_STEPS = 10  # a checkpoint is saved after 10 steps
WIDTH = 79  # the report's lines fit a page of the book
INDENT = " " * 6

Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def make_tensors(copies: int = 1) -> list[torch.Tensor]:
    """The parameters every check starts from: float64, seeded, shapes ``SHAPES``.

    The (3,) tensor is zero, like a freshly initialised bias (LAMB's trust ratio needs
    its special case there). ``copies`` repeats the shapes, for the count of operations.
    """
    generator = torch.Generator().manual_seed(1234)
    tensors = []
    for _ in range(copies):
        for shape in SHAPES:
            tensor = torch.randn(shape, generator=generator, dtype=torch.float64)
            tensors.append(tensor.zero_() if shape == (3,) else tensor)
    return tensors


# ---------------------------------------------------------------------------------------
# Per-tensor references that can make the typical mistakes
# ---------------------------------------------------------------------------------------


def scalar_dtype() -> torch.dtype:
    """The dtype of torch.optim's ``step`` entries."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class LoopOptimizer(torch.optim.Optimizer):
    """A textbook optimizer: a Python loop over the parameters, one tensor at a time.

    A subclass says which state it keeps (:meth:`state_init`) and how it updates one
    tensor (:meth:`update_one`), with torch.optim's state names, so it loads torch.optim's
    checkpoints. ``mistake`` makes it commit one of the typical mistakes listed in the
    class's ``mistakes`` (name -> the hint the grader gives when your optimizer does the
    same); ``None`` is the correct rule.
    """

    #: The typical mistakes this rule can make on purpose, and the hint for each.
    mistakes: ClassVar[dict[str, str]] = {}
    #: Whether the state has a ``step`` entry (torch.optim.SGD has none).
    step_in_state: ClassVar[bool] = True
    #: The hyper-parameters and their defaults, as in the assignment's signature.
    hyper: ClassVar[dict[str, Any]] = {}

    def __init__(self, params, mistake: str | None = None, **hyper: Any) -> None:
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        if mistake is not None and mistake not in self.mistakes:
            raise ValueError(f"{type(self).__name__} has no mistake {mistake!r}")
        self.mistake = mistake
        self.counts: dict[int, int] = {}  # the step counts, if not in the state
        super().__init__(params, {**self.hyper, **hyper})

    def state_init(self, group: dict[str, Any]) -> dict[str, float]:
        """The state a parameter gets before its first update: name -> initial value."""
        return {}

    def new_state(self, group: dict[str, Any], p: torch.Tensor) -> dict[str, torch.Tensor]:
        """A parameter's state before its first update: tensors shaped like ``p``."""
        return {name: torch.full_like(p, value) for name, value in self.state_init(group).items()}

    def update_one(self, group, p, g, state, t) -> None:
        """Update one parameter ``p`` in place from its gradient ``g`` at step ``t``."""
        raise NotImplementedError

    def update_group(self, group, items: list[tuple]) -> None:
        """Update the parameters of one group; ``items`` holds ``(p, g, state, t)``."""
        for p, g, state, t in items:
            self.update_one(group, p, g, state, t)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            items = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self.new_state(group, p))
                    if self.step_in_state:
                        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
                if self.step_in_state:
                    state["step"] += 1
                    t = int(state["step"])
                else:
                    t = self.counts[id(p)] = self.counts.get(id(p), 0) + 1
                items.append((p, p.grad, state, t))
            self.update_group(group, items)


class LoopSGD(LoopOptimizer):
    """``torch.optim.SGD`` as a loop (assignment 1's formulas), with typical mistakes."""

    step_in_state = False
    mistakes = {
        "damped_first_step": (
            "At a parameter's first update torch.optim.SGD sets the buffer to the "
            "gradient itself, b = g, without the factor (1 - dampening); a zero buffer "
            "updated as usual gives (1 - dampening) g. Use the step argument: copy g "
            "into the buffer when step == 1."
        ),
        "param_before_buffer": (
            "You step with the momentum buffer before updating it, i.e. with the "
            "previous step's buffer. Update the buffer first, b = momentum b + "
            "(1 - dampening) g, then step with the new b."
        ),
        "decoupled_weight_decay": (
            "Your weight decay is decoupled (p *= 1 - lr * weight_decay, or "
            "weight_decay * p added to the step after the buffer), but torch.optim.SGD "
            "couples it: g = g + weight_decay * p before g enters the buffer."
        ),
        "nesterov_without_momentum_factor": (
            "The Nesterov direction is g + momentum * b (with the updated buffer b), not g + b."
        ),
    }

    hyper = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)

    def state_init(self, group):
        return {"momentum_buffer": 0.0} if group["momentum"] != 0 else {}

    def update_one(self, group, p, g, state, t):
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        wd, mistake = group["weight_decay"], self.mistake
        if wd != 0 and mistake == "decoupled_weight_decay":
            p.mul_(1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        if mu == 0:
            d = g
        else:
            b = state["momentum_buffer"]
            old = b.clone()
            if t == 1 and mistake != "damped_first_step":
                b.copy_(g)
            else:
                b.mul_(mu).add_((1 - tau) * g)
            if mistake == "param_before_buffer":
                b = old
            if group["nesterov"]:
                factor = 1 if mistake == "nesterov_without_momentum_factor" else mu
                d = g + factor * b
            else:
                d = b
        p.sub_(lr * d)


EPS_INSIDE = (
    "eps is inside the square root; torch.optim adds it outside: sqrt(v) + eps "
    "(centered: sqrt(v - grad_avg**2) + eps). The two differ most where v is small: "
    "at the first steps, and for small gradients."
)


class LoopRMSprop(LoopOptimizer):
    """``torch.optim.RMSprop`` as a loop (assignment 2's formulas), with typical mistakes."""

    mistakes = {
        "eps_inside_sqrt": EPS_INSIDE,
        "stale_square_avg": (
            "You divide by the square average before adding this step's g**2 to it. "
            "Update square_avg (and grad_avg) first, then use them."
        ),
        "decoupled_weight_decay": (
            "torch.optim.RMSprop couples weight decay: g = g + weight_decay * p before "
            "anything else, not p *= 1 - lr * weight_decay."
        ),
        "bias_correction": (
            "torch.optim.RMSprop does not bias-correct: divide by sqrt(v) + eps, "
            "not by sqrt(v / (1 - alpha**step)) + eps."
        ),
        "momentum_of_gradient": (
            "The momentum buffer accumulates the normalised step g / (sqrt(v) + eps), "
            "b = momentum b + g / (sqrt(v) + eps), not the raw gradient."
        ),
    }

    hyper = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)

    def state_init(self, group):
        names = ["square_avg"]
        names += ["momentum_buffer"] if group["momentum"] > 0 else []
        names += ["grad_avg"] if group["centered"] else []
        return dict.fromkeys(names, 0.0)

    def update_one(self, group, p, g, state, t):
        lr, alpha, eps, mistake = group["lr"], group["alpha"], group["eps"], self.mistake
        wd, mu = group["weight_decay"], group["momentum"]
        if wd != 0 and mistake == "decoupled_weight_decay":
            p.mul_(1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        v = state["square_avg"]
        old_v = v.clone()
        v.mul_(alpha).add_((1 - alpha) * g * g)
        if mistake == "stale_square_avg":
            v = old_v
        if mistake == "bias_correction":
            v = v / (1 - alpha**t)
        if group["centered"]:
            avg = state["grad_avg"]
            old_avg = avg.clone()
            avg.mul_(alpha).add_((1 - alpha) * g)
            if mistake == "stale_square_avg":
                avg = old_avg
            v = v - avg * avg
        s = (v + eps).sqrt() if mistake == "eps_inside_sqrt" else v.sqrt() + eps
        if mu > 0:
            b = state["momentum_buffer"]
            if mistake == "momentum_of_gradient":
                b.mul_(mu).add_(g)
                p.sub_(lr * b / s)
            else:
                b.mul_(mu).add_(g / s)
                p.sub_(lr * b)
        else:
            p.sub_(lr * g / s)


class LoopAdagrad(LoopOptimizer):
    """``torch.optim.Adagrad`` as a loop (assignment 2's formulas), with typical mistakes."""

    mistakes = {
        "eps_inside_sqrt": EPS_INSIDE.replace("(centered: sqrt(v - grad_avg**2) + eps)", ""),
        "lr_decay_off_by_one": (
            "The learning rate decays as lr / (1 + (step - 1) * lr_decay): the first "
            "update uses lr itself."
        ),
        "no_initial_accumulator": (
            "The sum starts at initial_accumulator_value, not at 0: declare "
            "State('sum', init=group['initial_accumulator_value'])."
        ),
        "decoupled_weight_decay": (
            "torch.optim.Adagrad couples weight decay: g = g + weight_decay * p before "
            "the sum, not p *= 1 - lr * weight_decay."
        ),
        "stale_sum": (
            "You divide by the sum before adding this step's g**2 to it. Update the sum "
            "first, then use it."
        ),
    }

    hyper = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10)

    def state_init(self, group):
        if self.mistake == "no_initial_accumulator":
            return {"sum": 0.0}
        return {"sum": group["initial_accumulator_value"]}

    def update_one(self, group, p, g, state, t):
        lr, eps, wd, mistake = group["lr"], group["eps"], group["weight_decay"], self.mistake
        if wd != 0 and mistake == "decoupled_weight_decay":
            p.mul_(1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        decays = t if mistake == "lr_decay_off_by_one" else t - 1
        clr = lr / (1 + decays * group["lr_decay"])
        total = state["sum"]
        old = total.clone()
        total.add_(g * g)
        if mistake == "stale_sum":
            total = old
        s = (total + eps).sqrt() if mistake == "eps_inside_sqrt" else total.sqrt() + eps
        p.sub_(clr * g / s)


class LoopLAMB(LoopOptimizer):
    """LAMB (You et al., 2020) as a loop over tensors: assignment 3's reference.

    The formulas are in this module's docstring. ``p.norm()`` and ``r.norm()`` are the
    per-tensor norms; the fused version computes all of them at once with
    ``layout.norm``.
    """

    mistakes = {
        "no_bias_correction": (
            "The bias correction is missing: m_hat = m / (1 - beta1**step), v_hat = "
            "v / (1 - beta2**step). The trust ratio hides the overall scale, but without "
            "the correction eps and the weight-decay term get the wrong weight."
        ),
        "coupled_weight_decay": (
            "Weight decay must be decoupled: add weight_decay * p to the Adam direction, "
            "r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p, inside the trust ratio; "
            "not to the gradient before the moments."
        ),
        "weight_decay_outside_trust": (
            "The weight-decay term belongs inside the trust ratio: r = m_hat / "
            "(sqrt(v_hat) + eps) + weight_decay * p, and both the norm ||r|| and the "
            "step use that r."
        ),
        "global_trust_ratio": (
            "The trust ratio is per tensor: ||p_i|| / ||r_i|| for each parameter i, "
            "layout.norm(param) / layout.norm(r), not one ratio of the norms of the "
            "whole flat slice."
        ),
        "no_zero_norm_guard": (
            "A parameter whose norm is 0 (a bias initialised to zero) must get trust "
            "ratio 1, and so must one whose r is 0: with ||p|| / ||r|| alone it gets 0 "
            "and never moves. torch.where((w > 0) & (u > 0), w / u, 1) does it."
        ),
        "eps_inside_sqrt": (
            "eps is inside the square root; LAMB adds it outside: sqrt(v_hat) + eps."
        ),
        "stale_moments": (
            "You use the moments before adding this step's gradient to them. Update "
            "exp_avg and exp_avg_sq first, then compute r from them."
        ),
    }

    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)

    def state_init(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def new_state(self, group, p):
        # and the last trust ratio: one number per tensor, State("trust", shape=())
        return {**super().new_state(group, p), "trust": torch.zeros((), dtype=p.dtype)}

    def direction(self, group, p, g, state, t) -> torch.Tensor:
        """Update the moments and return r, the Adam direction plus weight decay."""
        (beta1, beta2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
        mistake = self.mistake
        if mistake == "coupled_weight_decay":
            g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        old_m, old_v = m.clone(), v.clone()
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)
        if mistake == "stale_moments":
            m, v = old_m, old_v
        if mistake == "no_bias_correction":
            m_hat, v_hat = m, v
        else:
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        if mistake == "eps_inside_sqrt":
            r = m_hat / (v_hat + eps).sqrt()
        else:
            r = m_hat / (v_hat.sqrt() + eps)
        if mistake not in ("coupled_weight_decay", "weight_decay_outside_trust"):
            r = r + wd * p
        return r

    def trust_ratio(self, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """q = w / u, or 1 where w or u is 0."""
        if self.mistake == "no_zero_norm_guard":
            return w / u
        return torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))

    def update_group(self, group, items):
        lr, wd = group["lr"], group["weight_decay"]
        directions = [self.direction(group, p, g, state, t) for p, g, state, t in items]
        params = [p for p, *_ in items]
        if self.mistake == "global_trust_ratio":
            w = torch.stack([p.norm() for p in params]).norm()
            u = torch.stack([r.norm() for r in directions]).norm()
            ratios = [self.trust_ratio(w, u)] * len(items)
        else:
            pairs = zip(params, directions, strict=True)
            ratios = [self.trust_ratio(p.norm(), r.norm()) for p, r in pairs]
        for (p, _, state, _), r, q in zip(items, directions, ratios, strict=True):
            state["trust"].copy_(q)
            if self.mistake == "weight_decay_outside_trust":
                p.sub_(lr * (q * r + wd * p))
            else:
                p.sub_(lr * q * r)


# ---------------------------------------------------------------------------------------
# What the grader knows about each optimizer
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One optimizer of an assignment: the class you write and what it is checked against.

    ``reference`` builds the correct optimizer from ``(params, **hyper)``, ``loop`` the
    per-tensor version that can make the typical mistakes. ``switches`` maps a
    hyper-parameter to the value that turns its feature off, and ``feature_hints`` says
    what to look at when a check passes once that feature is off.
    """

    name: str
    reference: Callable[..., torch.optim.Optimizer]
    loop: type[LoopOptimizer]
    state: str
    step_hint: str
    switches: dict[str, Any] = field(default_factory=dict)
    feature_hints: dict[str, str] = field(default_factory=dict)

    def make(self, cls: Callable, hyper: dict, group0: dict | None = None) -> Factory:
        """A factory of ``cls(params, **hyper)``; with ``group0``, parameter 0 gets a
        param group of its own with those hyper-parameters."""

        def factory(params: list[torch.Tensor]) -> torch.optim.Optimizer:
            if group0 is None:
                return cls(params, **hyper)
            return cls([{"params": params[:1], **group0}, {"params": params[1:]}], **hyper)

        return factory


def _torch(cls: type[torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """torch.optim's for-loop implementation (the one minioptim matches bit for bit)."""

    def make(params, **hyper):
        return cls(params, **hyper, foreach=False)

    make.__name__ = f"torch.optim.{cls.__name__}"
    return make


SGD_SPEC = Spec(
    name="MomentumSGD",
    reference=_torch(torch.optim.SGD),
    loop=LoopSGD,
    state="'momentum_buffer' when momentum != 0, nothing when momentum == 0, and no "
    "'step' entry (step_in_state = False), like torch.optim.SGD",
    step_hint="the Nesterov direction g + momentum * b, and the learning rate",
    switches={"nesterov": False, "dampening": 0.0, "weight_decay": 0.0},
    feature_hints={
        "nesterov": "It passes with nesterov=False: check the Nesterov direction, "
        "d = g + momentum * b, with the gradient after weight decay and the new buffer.",
        "dampening": "It passes with dampening=0: check the factor (1 - dampening) on g "
        "in the buffer update, and that the first buffer is g itself.",
        "weight_decay": "It passes with weight_decay=0: weight decay is coupled, "
        "g = g + weight_decay * p, before anything else.",
    },
)
RMSPROP_SPEC = Spec(
    name="RMSprop",
    reference=_torch(torch.optim.RMSprop),
    loop=LoopRMSprop,
    state="'square_avg', 'grad_avg' when centered, 'momentum_buffer' when momentum > 0, "
    "and 'step' (step_in_state = True), like torch.optim.RMSprop",
    step_hint="eps, the learning rate, and what you divide by",
    switches={"centered": False, "momentum": 0.0, "weight_decay": 0.0},
    feature_hints={
        "centered": "It passes with centered=False: check grad_avg (a lerp towards g) "
        "and the denominator sqrt(square_avg - grad_avg**2) + eps.",
        "momentum": "It passes with momentum=0: the buffer accumulates the normalised "
        "step, b = momentum b + g / (sqrt(v) + eps), and p moves by -lr * b.",
        "weight_decay": "It passes with weight_decay=0: torch.optim.RMSprop adds "
        "weight_decay * p to the gradient first (coupled).",
    },
)
ADAGRAD_SPEC = Spec(
    name="Adagrad",
    reference=_torch(torch.optim.Adagrad),
    loop=LoopAdagrad,
    state="'sum' (starting at initial_accumulator_value) and 'step', like torch.optim.Adagrad",
    step_hint="eps, and the decayed learning rate lr / (1 + (step - 1) * lr_decay)",
    switches={"lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0},
    feature_hints={
        "lr_decay": "It passes with lr_decay=0: the learning rate at step t is "
        "lr / (1 + (t - 1) * lr_decay), with t the step argument.",
        "weight_decay": "It passes with weight_decay=0: torch.optim.Adagrad adds "
        "weight_decay * p to the gradient first (coupled).",
        "initial_accumulator_value": "It passes with initial_accumulator_value=0: "
        "declare State('sum', init=group['initial_accumulator_value']).",
    },
)
LAMB_SPEC = Spec(
    name="LAMB",
    reference=LoopLAMB,
    loop=LoopLAMB,
    state="'exp_avg', 'exp_avg_sq', 'trust' (the last trust ratio, one number per "
    "parameter: State('trust', shape=())) and 'step'",
    step_hint="the bias correction, the weight-decay term in r, and the trust ratio per tensor",
    switches={"weight_decay": 0.0},
    feature_hints={
        "weight_decay": "It passes with weight_decay=0: the term weight_decay * p is "
        "added to r inside the trust ratio (decoupled)."
    },
)

GENERAL_HINTS = {
    "replaced": (
        "Update the state in place: state['v'].mul_(beta).add_(...) or "
        "state['v'].copy_(new). Assigning state['v'] = ... makes a new tensor that the "
        "optimizer never sees."
    ),
    "not in place": (
        "Update param in place: param.add_(step, alpha=-lr); param = param - lr * step "
        "only renames a new tensor."
    ),
    "returned": "update() changes tensors in place and returns nothing.",
    "keyword": "Keep the constructor's signature as given in the assignment.",
    "late": (
        "Your optimizer agrees when every parameter gets a gradient at every step, but "
        "not when one gets its first gradient at step 5. Use the step argument, the "
        "parameter's own count (1 at its first update), not a counter of your own."
    ),
    "groups": (
        "Your optimizer agrees with one param group but not with two. Read every "
        "hyper-parameter from group at every step, not from self.defaults or __init__."
    ),
    "from torch": (
        "Your optimizer agrees from scratch but not after loading torch.optim's "
        "checkpoint: all it needs must be in its state. Use the step argument (it "
        "survives load_state_dict), not a counter of your own, and torch's state names."
    ),
    "to torch": (
        "Your optimizer agrees from scratch, but after loading your checkpoint it and "
        "torch.optim continue differently: your state_dict must hold all the rule "
        "needs, under torch's state names. Use the step argument (it survives "
        "load_state_dict), not a counter of your own."
    ),
    "not a FusedOptimizer": "Write it as a subclass of minioptim.FusedOptimizer.",
}


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """The outcome of one check: its name, PASS or FAIL, what went wrong, a hint."""

    check: str
    passed: bool
    details: list[str] = field(default_factory=list)
    hint: str | None = None

    def lines(self, previous: Result | None = None) -> list[str]:
        """The report's lines; a failure like ``previous`` says "as above"."""
        status = "PASS" if self.passed else "FAIL"
        out = _wrap(f"{status}  {self.check}", first="", rest=INDENT)
        same = previous is not None and not previous.passed
        if same and (self.details, self.hint) == (previous.details, previous.hint):
            return [*out, f"{INDENT}(as above)"]
        for detail in self.details:
            out += _wrap(detail, first=INDENT, rest=INDENT)
        if self.hint:
            out += _wrap(f"hint: {self.hint}", first=INDENT, rest=INDENT)
        return out


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )


def _format_hyper(hyper: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in hyper.items()) or "the defaults"


def _late_gradient(step: int, index: int, param: torch.Tensor, gen: torch.Generator):
    """Standard normal gradients, but none for parameter LATE during its first steps."""
    grad = random_gradient(step, index, param, gen)
    return None if index == LATE and step <= LATE_STEPS else grad


def _train(make: Factory, tensors: list[torch.Tensor], steps: int):
    """Train ``steps`` steps on copies of ``tensors``; return the params and state_dict."""
    params = leaf_copies(tensors)
    optimizer = make(params)
    gen = torch.Generator().manual_seed(SEED)
    for step in range(1, steps + 1):
        for index, p in enumerate(params):
            set_gradient(p, random_gradient(step, index, p, gen))
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer.state_dict()


def _loaded(make: Factory, saved: dict) -> Factory:
    def factory(params):
        optimizer = make(params)
        optimizer.load_state_dict(copy.deepcopy(saved))
        return optimizer

    return factory


@dataclass
class Trajectory:
    """Your optimizer and the reference, side by side for STEPS steps.

    ``variant`` is None (every parameter gets a gradient at every step), ``"late"``
    (parameter LATE gets none for its first LATE_STEPS steps), ``"groups"`` (parameter 0
    has a param group of its own, with ``group0``), ``"from torch"`` (both continue from
    the reference's checkpoint after CHECKPOINT_STEPS steps) or ``"to torch"`` (both
    continue from yours).
    """

    spec: Spec
    label: str
    hyper: dict[str, Any]
    variant: str | None = None
    group0: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        name = f"{self.spec.name}, {self.label} ({_format_hyper(self.hyper)}"
        if self.variant == "groups":
            name += f"; parameter 0's group: {_format_hyper(self.group0)}"
        return name + ")"

    def setup(self, cls: Callable, other: Callable, hyper: dict | None = None):
        """The check's two factories, starting tensors and gradients."""
        hyper = self.hyper if hyper is None else hyper
        variant = self.variant
        mine = self.spec.make(cls, hyper, self.group0 if variant == "groups" else None)
        theirs = self.spec.make(other, hyper, self.group0 if variant == "groups" else None)
        tensors = make_tensors()
        gradient = _late_gradient if variant == "late" else random_gradient
        if variant in ("from torch", "to torch"):
            trainer = theirs if variant == "from torch" else mine
            tensors, saved = _train(trainer, tensors, CHECKPOINT_STEPS)
            mine, theirs = _loaded(mine, saved), _loaded(theirs, saved)
        return mine, theirs, tensors, gradient

    def compare(self, cls: Callable, other: Callable, hyper: dict | None = None) -> None:
        """Raise AssertionError (or whatever ``cls`` raises) unless they agree."""
        mine, theirs, tensors, gradient = self.setup(cls, other, hyper)
        assert_same_trajectory(
            mine,
            theirs,
            tensors,
            steps=STEPS,
            seed=SEED + 1,
            gradient=gradient,
            rtol=RTOL,
            atol=ATOL,
        )

    def trace(self, cls: Callable) -> list[dict[str, tuple[float, bool]]]:
        """Every entry's greatest difference from the reference at every step."""
        mine, theirs, tensors, gradient = self.setup(cls, self.spec.reference)
        return trace(mine, theirs, tensors, steps=STEPS, gradient=gradient, seed=SEED + 1)

    def agrees(self, cls: Callable, other: Callable, hyper: dict | None = None) -> bool:
        try:
            self.compare(cls, other, hyper)
        except Exception:
            return False
        return True

    def run(self, cls: type) -> Result:
        try:
            self.compare(cls, self.spec.reference)
        except AssertionError as error:
            details, divergence = _describe_divergence(error)
            try:
                rows = self.trace(cls)
            except Exception:
                rows = []
            if "step" in divergence and rows:
                details.append(_same_step(rows, int(divergence["step"]), divergence["entry"]))
            if self.variant in ("from torch", "to torch"):
                saved = f"after loading a checkpoint saved at step {CHECKPOINT_STEPS}"
                details[0] = f"{saved}: {details[0]}"
            hint = self.diagnose(cls, divergence, rows)
            return Result(self.name, False, details, hint)
        except Exception as error:
            details, hint = _describe_error(error)
            return Result(self.name, False, details, hint)
        return Result(self.name, True)

    def diagnose(self, cls: type, divergence: dict, rows: list) -> str:
        """Find a hint: a typical mistake, a variant, a feature, or where it diverged."""
        spec = self.spec
        if "keys" in divergence:
            return f"The grader expects the state names {spec.state}."
        for mistake, hint in spec.loop.mistakes.items():
            if self.agrees(cls, _with_mistake(spec.loop, mistake)):
                return hint
        if self.variant is not None:
            plain = Trajectory(spec, self.label, self.hyper)
            if plain.agrees(cls, spec.reference):
                return GENERAL_HINTS[self.variant]
        for name, off in spec.switches.items():
            if name in self.hyper and self.hyper[name] != off:
                hyper = {**self.hyper, name: off}
                if _valid(spec.reference, hyper) and self.agrees(cls, spec.reference, hyper):
                    return spec.feature_hints[name]
        return _where_hint(rows, self.spec)


def _with_mistake(loop: type[LoopOptimizer], mistake: str) -> Callable:
    def make(params, **hyper):
        return loop(params, **hyper, mistake=mistake)

    return make


def _valid(make: Callable, hyper: dict) -> bool:
    """Whether the reference accepts these hyper-parameters (nesterov needs momentum)."""
    try:
        make([torch.zeros(1, requires_grad=True)], **hyper)
    except ValueError:
        return False
    return True


DIVERGENCE = re.compile(
    r"^step (?P<step>\d+), parameter (?P<param>\d+) \(shape (?P<shape>\([^)]*\))\)"
    r"(?:, state\[(?P<entry>'[^']*')\])?: (?P<message>.*)",
    re.DOTALL,
)
GREATEST = re.compile(r"Greatest (absolute|relative) difference: (\S+)")


def _describe_divergence(error: AssertionError) -> tuple[list[str], dict]:
    """Read assert_same_trajectory's message: where it diverged first, and how much."""
    text = str(error)
    match = DIVERGENCE.match(text)
    if match is None:
        return [_shorten(text)], {}
    found = match.groupdict()
    where = f"step {found['step']}, parameter {found['param']} (shape {found['shape']})"
    message = found["message"]
    if message.startswith("state keys"):
        return [f"{where}: {message}"], {**found, "keys": True}
    what = f"state[{found['entry']}]" if found["entry"] else "the parameter"
    sizes = dict(GREATEST.findall(message))
    if sizes:
        size = f"by up to {float(sizes['absolute']):.1e}"
        if "relative" in sizes:
            size += f" (relative {float(sizes['relative']):.1e})"
    else:  # shapes or dtypes differ, or a step count
        size = message.strip().splitlines()[0]
    return [f"{where}: {what} differs first,", size], found


def _shorten(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][:lines]
    return " ".join(kept)


def _describe_error(error: BaseException) -> tuple[list[str], str | None]:
    """What to show for an error raised by a student's optimizer, and a hint."""
    name = type(error).__name__
    message = error.args[0] if len(error.args) == 1 else str(error)
    message = str(message)
    if isinstance(error, NotImplementedError):
        return [f"not implemented yet ({message or 'NotImplementedError'})"], None
    details = [f"raised {name}: {_shorten(message)}"]
    where = _student_frame(error)
    if where:
        details.append(where)
    hint = None
    if "replaced state" in message:
        hint = GENERAL_HINTS["replaced"]
    elif "did not change param in place" in message:
        hint = GENERAL_HINTS["not in place"]
    elif isinstance(error, TypeError) and "returned a" in message:
        hint = GENERAL_HINTS["returned"]
    elif isinstance(error, TypeError) and "keyword argument" in message:
        hint = GENERAL_HINTS["keyword"]
    return details, hint


# Frames in these folders are not the student's code.
LIBRARIES = tuple(
    Path(folder).resolve()
    for folder in (Path(__file__).parent, Path(torch.__file__).parent, sysconfig.get_path("stdlib"))
)


def _student_frame(error: BaseException) -> str | None:
    """``in update, line 12: v = ...``: the innermost frame of the student's own code."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(folder) for folder in LIBRARIES):
            line = f": {frame.line}" if frame.line else ""
            return f"in {frame.name}, line {frame.lineno}{line}"
    return None


def _same_step(rows: list, step: int, entry: str | None) -> str:
    """What else differs at the step of the first divergence (over all parameters)."""
    first = "param" if entry is None else entry.strip("'")
    others = {name: size for name, (size, differs) in rows[step - 1].items() if differs}
    others.pop(first, None)
    states = [name for name in rows[step - 1] if name != "param"]
    if others:
        listed = ", ".join(
            ("the parameters" if name == "param" else f"state[{name!r}]")
            + f" (by up to {size:.1e})"
            for name, size in others.items()
        )
        return f"at step {step} also {listed}"
    if first == "param" and states:
        return f"at step {step} every state entry agrees"
    return f"at step {step} nothing else differs"


def _where_hint(rows: list, spec: Spec) -> str:
    """A hint from which entry diverged first, when no typical mistake fits."""
    first = {}
    for step, row in enumerate(rows, start=1):
        for entry, (_, differs) in row.items():
            if differs:
                first.setdefault(entry, step)
    if not first:
        return "Run compare() on this setting to see where it diverges."
    states = {entry: step for entry, step in first.items() if entry != "param"}
    if not states:
        return (
            "Every state entry agrees with the reference at every step, but the "
            f"parameters do not: look at the step itself ({spec.step_hint})."
        )
    entry, step = min(states.items(), key=lambda item: item[1])
    if first.get("param", math.inf) < step:  # the states differ because the parameters do
        return (
            f"The parameters differ from step {first['param']}, every state entry only "
            f"later: look at the step itself ({spec.step_hint})."
        )
    if step == 1:
        return (
            f"state[{entry!r}] already differs after the first update: check its "
            "formula, and its value before the first update."
        )
    return (
        f"state[{entry!r}] agrees for {step - 1} step(s), then differs: check its "
        "recursion, and the order of your operations (is a value used before or "
        "after it is updated?)."
    )


def trace(
    make_optimizer: Factory,
    make_reference: Factory,
    tensors: Iterable[torch.Tensor],
    *,
    steps: int = STEPS,
    gradient=random_gradient,
    seed: int = SEED + 1,
) -> list[dict[str, tuple[float, bool]]]:
    """Run two optimizers side by side, as ``assert_same_trajectory``, and record all.

    Returns one dict per step: entry (``"param"`` or a state name) -> (greatest absolute
    difference over the parameters, whether it is beyond ``rtol=RTOL, atol=ATOL``). An
    entry that only one of them keeps, or keeps in another shape, counts as ``inf``.
    """
    tensors = list(tensors)
    ours, theirs = leaf_copies(tensors), leaf_copies(tensors)
    optimizer, reference = make_optimizer(ours), make_reference(theirs)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(1, steps + 1):
        for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            grad = gradient(step, index, p, gen)
            set_gradient(p, grad)
            set_gradient(q, grad)
        optimizer.step()
        reference.step()
        row: dict[str, tuple[float, bool]] = {}
        for p, q in zip(ours, theirs, strict=True):
            pairs = [("param", p.detach(), q.detach())]
            mine, their = optimizer.state.get(p, {}), reference.state.get(q, {})
            for name in sorted(set(mine) | set(their)):
                pairs.append((name, mine.get(name), their.get(name)))
            for name, a, b in pairs:
                size, differs = _difference(a, b, exact=name == "step")
                old_size, old_differs = row.get(name, (0.0, False))
                row[name] = (max(size, old_size), differs or old_differs)
        rows.append(row)
    return rows


def _difference(a, b, exact: bool) -> tuple[float, bool]:
    if a is None and b is None:
        return 0.0, False
    if a is None or b is None or a.shape != b.shape:
        return math.inf, True
    a, b = a.detach().double(), b.detach().double()
    size = (a - b).abs().max().item() if a.numel() else 0.0
    if exact:
        return size, size != 0
    return size, not torch.allclose(a, b, rtol=RTOL, atol=ATOL)


@dataclass
class Validation:
    """``check_group``: invalid hyper-parameters raise ValueError naming the argument;
    valid ones (including edge cases) are accepted, in every param group."""

    spec: Spec
    invalid: list[tuple[dict[str, Any], str]]
    valid: list[dict[str, Any]]
    name: str = ""

    def __post_init__(self):
        self.name = f"{self.spec.name}, check_group rejects invalid hyper-parameters"

    def run(self, cls: type) -> Result:
        hint = (
            "In check_group(group), raise ValueError(f'... must be ..., got {value}') "
            "with the argument's name in the message, for each rule of the assignment."
        )
        try:
            for hyper, argument in self.invalid:
                problem = self._rejects(cls, hyper, argument)
                if problem:
                    return Result(self.name, False, [problem], hint)
            for hyper in self.valid:
                try:
                    cls([torch.zeros(2, requires_grad=True)], **hyper)
                except ValueError as error:
                    problem = f"rejects valid hyper-parameters {_format_hyper(hyper)}: {error}"
                    return Result(self.name, False, [problem], "Accept the edge cases. " + hint)
        except Exception as error:
            return Result(self.name, False, *_describe_error(error))
        return Result(self.name, True)

    @staticmethod
    def _rejects(cls: type, hyper: dict, argument: str, later: bool = False) -> str | None:
        """None if ``cls`` rejects ``hyper`` as asked, else what is wrong."""
        said = _format_hyper(hyper)
        try:
            if later:  # in a param group added after construction
                optimizer = cls([torch.zeros(2, requires_grad=True)])
                optimizer.add_param_group({"params": [torch.zeros(2)], **hyper})
            else:
                cls([torch.zeros(2, requires_grad=True)], **hyper)
        except ValueError as error:
            if argument not in str(error):
                return f"{said}: the ValueError does not name {argument!r}: {error}"
            if not later:
                return Validation._rejects(cls, hyper, argument, later=True)
            return None
        where = " in a param group added later" if later else ""
        return f"{said}: accepted{where}; it should raise ValueError"


class CountOps(TorchDispatchMode):
    """Count the ATen operations run inside a ``with`` block (as in lecture 5)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Fused:
    """No Python loop over the parameters: the number of tensor operations of one
    ``update`` on 3 * COPIES parameters must be the count on 3 parameters, give or take
    fewer than one operation per two extra parameters."""

    spec: Spec
    hyper: dict[str, Any]
    copies: int = 10
    name: str = ""

    def __post_init__(self):
        self.name = f"{self.spec.name}, no Python loop over the parameters"

    def count(self, cls: type, copies: int) -> int:
        """Operations in one update of ``cls`` (after a first step) on 3 * copies params."""
        counter = CountOps()
        if "layout" in inspect.signature(cls.update).parameters:

            class Counted(cls):
                def update(self, group, param, grad, state, step, layout):
                    with counter:
                        return super().update(group, param, grad, state, step, layout)

        else:

            class Counted(cls):
                def update(self, group, param, grad, state, step):
                    with counter:
                        return super().update(group, param, grad, state, step)

        Counted.__name__ = Counted.__qualname__ = cls.__name__  # for error messages
        params = leaf_copies(make_tensors(copies))
        optimizer = Counted(params, **self.hyper)
        gen = torch.Generator().manual_seed(SEED)
        for _ in range(2):
            counter.ops = 0
            for index, p in enumerate(params):
                set_gradient(p, random_gradient(1, index, p, gen))
            optimizer.step()
        return counter.ops

    def run(self, cls: type) -> Result:
        try:
            few, many = self.count(cls, 1), self.count(cls, self.copies)
        except Exception as error:
            return Result(self.name, False, *_describe_error(error))
        n_few, n_many = len(SHAPES), len(SHAPES) * self.copies
        if many - few < (n_many - n_few) / 2:
            return Result(self.name, True)
        details = [
            f"one update ran {few} tensor operations on {n_few} parameters and {many} on {n_many}"
        ]
        hint = (
            "Something runs once per parameter. Compute every tensor's norm at once "
            "with layout.norm(...), and broadcast the ratios back with layout.expand(...)."
        )
        return Result(self.name, False, details, hint)


# ---------------------------------------------------------------------------------------
# The assignments
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    title: str
    specs: tuple[Spec, ...]
    checks: tuple[Trajectory | Validation | Fused, ...]


def _sgd(label, variant=None, group0=None, **hyper):
    return Trajectory(SGD_SPEC, label, {"lr": 0.1, **hyper}, variant, group0)


def _rmsprop(label, variant=None, **hyper):
    return Trajectory(RMSPROP_SPEC, label, {"lr": 0.01, **hyper}, variant)


def _adagrad(label, variant=None, **hyper):
    return Trajectory(ADAGRAD_SPEC, label, {"lr": 0.1, **hyper}, variant)


def _lamb(label, variant=None, group0=None, **hyper):
    return Trajectory(LAMB_SPEC, label, {"lr": 0.01, **hyper}, variant, group0)


ASSIGNMENTS = {
    "assignment1": Assignment(
        "SGD with momentum, exactly as torch.optim.SGD",
        (SGD_SPEC,),
        (
            _sgd("heavy ball", momentum=0.9),
            _sgd("dampening", momentum=0.9, dampening=0.5),
            _sgd("Nesterov", momentum=0.9, nesterov=True),
            _sgd("weight decay", momentum=0.9, weight_decay=0.1),
            _sgd("all", momentum=0.8, dampening=0.3, weight_decay=0.05),
            _sgd("Nesterov, weight decay", momentum=0.9, nesterov=True, weight_decay=0.1),
            _sgd("no momentum", momentum=0.0, weight_decay=0.1),
            _sgd("a late parameter", "late", momentum=0.9, dampening=0.5),
            _sgd("two groups", "groups", {"lr": 0.05, "momentum": 0.5}, momentum=0.9),
            Validation(
                SGD_SPEC,
                invalid=[
                    ({"lr": -0.1}, "lr"),
                    ({"momentum": -0.5}, "momentum"),
                    ({"momentum": 1.0}, "momentum"),
                    ({"momentum": 0.9, "dampening": -0.1}, "dampening"),
                    ({"momentum": 0.9, "dampening": 1.5}, "dampening"),
                    ({"weight_decay": -1e-4}, "weight_decay"),
                    ({"nesterov": True}, "nesterov"),
                    ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
                ],
                valid=[
                    {"lr": 0.0},
                    {"momentum": 0.0, "dampening": 1.0},
                    {"momentum": 0.99, "weight_decay": 0.0},
                    {"momentum": 0.9, "nesterov": True},
                ],
            ),
        ),
    ),
    "assignment2": Assignment(
        "RMSprop and Adagrad, exactly as torch.optim",
        (RMSPROP_SPEC, ADAGRAD_SPEC),
        (
            _rmsprop("plain"),
            _rmsprop("large eps", alpha=0.9, eps=1e-3),
            _rmsprop("centered", centered=True),
            _rmsprop("momentum", momentum=0.9),
            _rmsprop("weight decay", weight_decay=0.1),
            # (lr=0.02: the other checks use the default lr, 0.01)
            _rmsprop("all", lr=0.02, centered=True, momentum=0.9, weight_decay=0.1, eps=1e-4),
            _rmsprop("a late parameter", "late", centered=True, momentum=0.9),
            _rmsprop("from torch's checkpoint", "from torch", centered=True, momentum=0.9),
            _rmsprop("torch from yours", "to torch", centered=True, momentum=0.9),
            _adagrad("plain"),
            _adagrad("initial accumulator", initial_accumulator_value=0.5),
            _adagrad("lr decay", lr_decay=0.05),
            _adagrad("weight decay", weight_decay=0.1),
            _adagrad("large eps", eps=1e-3),
            _adagrad("all", lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.1),
            _adagrad(
                "from torch's checkpoint",
                "from torch",
                lr_decay=0.05,
                initial_accumulator_value=0.1,
            ),
            _adagrad("torch from yours", "to torch", lr_decay=0.05, weight_decay=0.1),
        ),
    ),
    "assignment3": Assignment(
        "LAMB with per-tensor trust ratios, fused",
        (LAMB_SPEC,),
        (
            _lamb("defaults"),
            _lamb("no weight decay", weight_decay=0.0),
            _lamb("strong weight decay", betas=(0.8, 0.99), weight_decay=0.1),
            _lamb("large eps", eps=1e-3),
            _lamb("a late parameter", "late", weight_decay=0.1),
            _lamb("two groups", "groups", {"weight_decay": 0.0}, weight_decay=0.1),
            Fused(LAMB_SPEC, {"lr": 0.01}),
        ),
    ),
}


# ---------------------------------------------------------------------------------------
# Running the grader
# ---------------------------------------------------------------------------------------


@dataclass
class Report:
    """All results of one assignment; ``str(report)`` is what :func:`grade` prints."""

    assignment: str
    title: str
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> list[Result]:
        return [result for result in self.results if not result.passed]

    def header(self) -> str:
        return f"{self.assignment}: {self.title}"

    def summary(self) -> str:
        n, failed = len(self.results), len(self.failed)
        if not failed:
            return f"All {n} checks passed."
        return f"{n - failed} of {n} checks passed, {failed} failed."

    def __str__(self) -> str:
        lines = [self.header()]
        for previous, result in zip([None, *self.results], self.results, strict=False):
            lines += result.lines(previous)
        return "\n".join([*lines, self.summary()])

    def __repr__(self) -> str:
        return f"<Report {self.assignment}: {self.summary()}>"


class GradingFailed(AssertionError):
    """Raised by :func:`grade` when a check fails; the report above says which and why.

    In a notebook it shows as one line, without a traceback (``_render_traceback_`` is
    the hook IPython uses for exceptions that render themselves).
    """

    def __init__(self, report: Report) -> None:
        super().__init__(f"{report.summary()} See the report above.")
        self.report = report

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def run(
    assignment: str,
    namespace: Any = None,
    /,
    *,
    on_result: Callable[[Result], None] | None = None,
    **classes: type,
) -> Report:
    """Run every check of ``assignment``; return the :class:`Report` (no printing).

    The classes come from ``namespace`` (a module, a dict such as ``globals()``, or any
    object with attributes) and from keyword arguments, by the names the assignment
    asks for (``MomentumSGD``; ``RMSprop`` and ``Adagrad``; ``LAMB``).
    """
    if assignment not in ASSIGNMENTS:
        known = ", ".join(ASSIGNMENTS)
        raise ValueError(f"no assignment {assignment!r}; the assignments are {known}")
    task = ASSIGNMENTS[assignment]
    found = _classes(namespace, classes, [spec.name for spec in task.specs])
    report = Report(assignment, task.title)
    with _one_thread():
        for check in task.checks:
            cls = found.get(check.spec.name)
            if cls is None:
                result = Result(check.name, False, [f"no class named {check.spec.name}"])
            elif not (isinstance(cls, type) and issubclass(cls, FusedOptimizer)):
                details = [f"{check.spec.name} is not a subclass of minioptim.FusedOptimizer"]
                hint = GENERAL_HINTS["not a FusedOptimizer"]
                result = Result(check.name, False, details, hint)
            else:
                result = check.run(cls)
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    return report


@contextlib.contextmanager
def _one_thread():
    """Run on one CPU thread: on tensors this small, a thread pool only adds overhead
    (on a busy 2-core machine some operations take a thousand times longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _classes(namespace: Any, classes: dict[str, type], names: list[str]) -> dict[str, type]:
    unknown = set(classes) - set(names)
    if unknown:
        raise TypeError(f"unexpected classes {sorted(unknown)}; this assignment asks for {names}")
    found = {}
    for name in names:
        if name in classes:
            found[name] = classes[name]
        elif isinstance(namespace, Mapping) and name in namespace:
            found[name] = namespace[name]
        elif namespace is not None and not isinstance(namespace, Mapping):
            if hasattr(namespace, name):
                found[name] = getattr(namespace, name)
    return found


def grade(assignment: str, namespace: Any = None, /, **classes: type) -> None:
    """Grade your classes for ``assignment``: print the report; raise if a check fails.

    >>> grade("assignment2", RMSprop=RMSprop, Adagrad=Adagrad)

    After the report, raises :class:`GradingFailed` (a one-line ``AssertionError``, with
    the :class:`Report` as its ``report``) if any check failed. :func:`run` returns the
    report without printing.
    """
    task = ASSIGNMENTS.get(assignment)
    if task is not None:
        print(f"{assignment}: {task.title}", flush=True)
    shown: list[Result] = []

    def show(result: Result) -> None:
        print(*result.lines(shown[-1] if shown else None), sep="\n", flush=True)
        shown.append(result)

    report = run(assignment, namespace, on_result=show, **classes)
    print(report.summary(), flush=True)
    if not report.passed:
        raise GradingFailed(report)


def compare(optimizer: Callable, reference: Callable, *, steps: int = 5, **hyper: Any) -> None:
    """Print how far ``optimizer`` is from ``reference``, entry by entry, step by step.

    Both are built as ``cls(params, **hyper)`` on :func:`make_tensors`' parameters and
    get the same gradients. Each column is the greatest absolute difference over the
    parameters, of the parameters or of one state entry; ``*`` marks a difference
    beyond the grader's tolerance and ``missing`` an entry only one of them keeps.

    >>> compare(MomentumSGD, torch.optim.SGD, lr=0.1, momentum=0.9)  # doctest: +SKIP
    """
    try:
        with _one_thread():
            rows = trace(
                lambda ps: optimizer(ps, **hyper),
                lambda ps: reference(ps, **hyper),
                make_tensors(),
                steps=steps,
            )
    except Exception as error:
        name = getattr(optimizer, "__name__", "the optimizer")
        details, hint = _describe_error(error)
        print(*_wrap(f"{name}: {' '.join(details)}", "", INDENT), sep="\n")
        if hint:
            print(*_wrap(f"hint: {hint}", INDENT, INDENT), sep="\n")
        return
    names = list(rows[0])
    widths = [max(len(name), 9) for name in names]
    print("step  " + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)))
    for step, row in enumerate(rows, start=1):
        cells = []
        for name, width in zip(names, widths, strict=True):
            size, differs = row.get(name, (math.inf, True))
            text = "missing" if math.isinf(size) else "0" if size == 0 else f"{size:.1e}"
            cells.append((text + ("*" if differs else " ")).rjust(width))
        print(f"{step:4d}  " + "  ".join(cells))


def load_file(path: str | Path) -> ModuleType:
    """Run a Python file as a module (with its folder on ``sys.path``, as a script)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


USAGE = """\
usage: python -m minioptim.grade ASSIGNMENT FILE

Grade the optimizer classes defined in FILE (a .py file) for ASSIGNMENT, one of
{names}. Exit status: 0 if every check passes, 1 if one fails."""


def main(argv: list[str] | None = None) -> int:
    """``python -m minioptim.grade assignment1 my_optimizers.py``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ASSIGNMENTS:
        print(USAGE.format(names=", ".join(ASSIGNMENTS)), file=sys.stderr)
        return 2
    assignment, path = argv
    try:
        module = load_file(path)
    except Exception as error:
        print(f"could not load {path}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    try:
        grade(assignment, module)
    except GradingFailed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
