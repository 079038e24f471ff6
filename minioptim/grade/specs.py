"""What the grader knows about each optimizer: its reference, its loop with the typical
mistakes, its state names, and what to look at when a feature is wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .loops import LoopAdagrad, LoopLAMB, LoopOptimizer, LoopRMSprop, LoopSGD
from .trajectories import Factory


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


def torch_optim(cls: type[torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """torch.optim's for-loop implementation (the one minioptim matches bit for bit)."""

    def make(params, **hyper):
        return cls(params, **hyper, foreach=False)

    make.__name__ = f"torch.optim.{cls.__name__}"
    return make


SGD_SPEC = Spec(
    name="MomentumSGD",
    reference=torch_optim(torch.optim.SGD),
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
    reference=torch_optim(torch.optim.RMSprop),
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
    reference=torch_optim(torch.optim.Adagrad),
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
        "weight_decay": "It passes with weight_decay=0: weight decay goes inside the "
        "trust ratio, r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p, and both the "
        "ratio ||p|| / ||r|| and the step -lr * q * r use that r; not p *= 1 - lr * "
        "weight_decay, nor a term added outside the ratio, nor weight decay in the "
        "gradient."
    },
)


def accepts(make: Callable, hyper: dict) -> bool:
    """Whether the reference accepts these hyper-parameters (nesterov needs momentum)."""
    try:
        make([torch.zeros(1, requires_grad=True)], **hyper)
    except ValueError:
        return False
    return True
