"""One registry of optimizer cases that the shared tests iterate (as torch.optim's optim_db).

Each case names a minioptim optimizer with options, the independent reference it must
match (torch.optim's for-loop, ``foreach=False``, or a per-tensor definition from
``references.py``), the parameters it runs on, and how closely it agrees, per path and
dtype, measured, not guessed:

- SGD, Adam, AdamW, Muon: the reference path repeats torch.optim's operations and is
  bit-identical; the fast path runs torch's fused kernels, which round differently (Muon's
  batched Newton–Schulz measured bit-identical on CPU, but batched matmuls may round
  differently elsewhere, so it gets the fast tolerance).
- SignSGD, Lion: the per-tensor definitions write ``beta m + (1 - beta) g`` and
  ``p - lr (sign + wd p)`` where minioptim uses ``lerp_`` and ``p (1 - lr wd) - lr sign``:
  the same to rounding (measured: 1.4e-6 in float32, 1.8e-15 in float64 after 20 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from conftest import TOLERANCES, make_tensors
from references import PlainLion, PlainSignSGD

import minioptim

EXACT = dict(rtol=0, atol=0)


def matrices(dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """Muon's parameters: 2-d only; two of one shape (a batch), a square, a transposed one."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return [randn(5, 3), randn(3, 5), randn(5, 3), randn(4, 4), randn(2, 6).t()]


def torch_optim(name: str) -> Callable[..., torch.optim.Optimizer]:
    def make(params, **options):
        if name != "Muon":  # torch.optim.Muon has no foreach option
            options = dict(options, foreach=False)
        return getattr(torch.optim, name)(params, **options)

    return make


@dataclass(frozen=True)
class Case:
    id: str
    name: str  # the minioptim class
    options: dict
    reference: Callable[..., torch.optim.Optimizer]
    torch_format: bool  # the reference is torch.optim's class: its state_dict is the format
    tensors: Callable[[torch.dtype], list[torch.Tensor]] = make_tensors
    exact: bool = True  # the reference path repeats the reference's operations

    def ours(self, params, impl="auto", **override) -> minioptim.FusedOptimizer:
        return getattr(minioptim, self.name)(params, impl=impl, **{**self.options, **override})

    def theirs(self, params, **override) -> torch.optim.Optimizer:
        return self.reference(params, **{**self.options, **override})

    def tolerance(self, impl: str, dtype: torch.dtype) -> dict:
        if impl == "reference" and self.exact:
            return EXACT
        return TOLERANCES["fast", dtype]


def case(id, name, reference=None, tensors=make_tensors, exact=True, **options) -> Case:
    """A case; without ``reference`` the reference is torch.optim's class of that name."""
    torch_format = reference is None
    reference = torch_optim(name) if torch_format else reference
    return Case(id, name, options, reference, torch_format, tensors, exact)


CASES = [
    case("sgd", "SGD", lr=0.05),
    case("sgd-nesterov-wd", "SGD", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    case("sgd-dampening", "SGD", lr=0.05, momentum=0.8, dampening=0.3),
    case("adam-amsgrad-wd", "Adam", lr=0.01, amsgrad=True, weight_decay=0.1),
    case("adamw", "AdamW", lr=0.01, betas=(0.8, 0.95)),
    case("signsgd", "SignSGD", PlainSignSGD, exact=False, lr=0.01),
    case(
        "signum-wd", "SignSGD", PlainSignSGD, exact=False, lr=0.01, momentum=0.9, weight_decay=0.1
    ),
    case("lion-wd", "Lion", PlainLion, exact=False, lr=0.01, weight_decay=0.1),
    case("lion-maximize", "Lion", PlainLion, exact=False, lr=0.01, betas=(0.5, 0.9), maximize=True),
    case("muon", "Muon", tensors=matrices, lr=0.02),
    case(
        "muon-plain-rms",
        "Muon",
        tensors=matrices,
        lr=0.02,
        nesterov=False,
        adjust_lr_fn="match_rms_adamw",
    ),
]
