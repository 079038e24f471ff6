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
- Half precision (``half``): measured per case as the absolute slack, in units of the
  dtype's eps (with ``rtol = eps``), that parameters and state needed after 12 steps
  against the reference on the CPU, about doubled; 0 means bit-identical. Every bound is
  below what a learning rate 5 % off produces (except lion-maximize in bfloat16: 25 %).
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


def every(params) -> list[torch.Tensor]:
    return list(params)


def matrices_only(params) -> list[torch.Tensor]:
    """Muon takes the 2-d weights of a model (its biases go to another optimizer)."""
    return [p for p in params if p.ndim == 2]


@dataclass(frozen=True)
class Case:
    id: str
    name: str  # the minioptim class
    options: dict
    reference: Callable[..., torch.optim.Optimizer]
    torch_format: bool  # the reference is torch.optim's class: its state_dict is the format
    tensors: Callable[[torch.dtype], list[torch.Tensor]] = make_tensors
    exact: bool = True  # the reference path repeats the reference's operations
    selects: Callable = every  # the parameters of a model this optimizer takes
    # (float16, bfloat16): slack in eps units against the reference, or why none applies
    half: tuple[float | str, float | str] = (0, 0)

    def ours(self, params, impl="auto", **override) -> minioptim.FusedOptimizer:
        return getattr(minioptim, self.name)(params, impl=impl, **{**self.options, **override})

    def theirs(self, params, **override) -> torch.optim.Optimizer:
        return self.reference(params, **{**self.options, **override})

    def half_reason(self, dtype: torch.dtype) -> str | None:
        """Why this case cannot be compared with its reference in half precision, if so."""
        slack = self.half[dtype == torch.bfloat16]
        return slack if isinstance(slack, str) else None

    def tolerance(self, impl: str, dtype: torch.dtype) -> dict:
        if dtype in (torch.float16, torch.bfloat16):
            ulps = self.half[dtype == torch.bfloat16]
            eps = torch.finfo(dtype).eps
            return dict(rtol=eps if ulps else 0, atol=ulps * eps)
        if impl == "reference" and self.exact:
            return EXACT
        return TOLERANCES["fast", dtype]


def case(id, name, reference=None, tensors=make_tensors, exact=True, **options) -> Case:
    """A case; without ``reference`` the reference is torch.optim's class of that name."""
    torch_format = reference is None
    reference = torch_optim(name) if torch_format else reference
    extra = {k: options.pop(k) for k in ("selects", "half") if k in options}
    return Case(id, name, options, reference, torch_format, tensors, exact, **extra)


# Lion's definition decays as p - lr wd p, minioptim as p (1 - lr wd): in half precision the
# two round apart by an ulp, and a momentum entry near zero then flips sign (2 lr apart).
LION_DECAY = "p - lr wd p and p (1 - lr wd) round apart in half precision; signs flip"
# torch.optim.Muon orthogonalizes grad.bfloat16(), which for a bfloat16 buffer is the buffer
# itself, and divides it by its norm in place: with nesterov=False its momentum buffer is
# overwritten (a torch bug; minioptim divides out of place and keeps the true momentum).
TORCH_MUON_BF16 = "torch.optim.Muon normalizes a bfloat16 momentum buffer in place"

CASES = [
    case("sgd", "SGD", lr=0.05, half=(1, 0.5)),
    case(
        "sgd-nesterov-wd",
        "SGD",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.01,
        half=(2, 1.5),
    ),
    case("sgd-dampening", "SGD", lr=0.05, momentum=0.8, dampening=0.3, half=(4.5, 2.5)),
    # half: 0.1 eps measured with float betas, 0.4 with tensor betas (torch computes the
    # bias corrections of tensor betas in float32)
    case("adam-amsgrad-wd", "Adam", lr=0.01, amsgrad=True, weight_decay=0.1, half=(0.5, 0.25)),
    case("adamw", "AdamW", lr=0.01, betas=(0.8, 0.95)),
    case("signsgd", "SignSGD", PlainSignSGD, exact=False, lr=0.01),
    case(
        "signum-wd",
        "SignSGD",
        PlainSignSGD,
        exact=False,
        lr=0.01,
        momentum=0.9,
        weight_decay=0.1,
        half=(0.75, 0.75),
    ),
    case(
        "lion-wd",
        "Lion",
        PlainLion,
        exact=False,
        lr=0.01,
        weight_decay=0.1,
        half=(LION_DECAY, LION_DECAY),
    ),
    case(
        "lion-maximize",
        "Lion",
        PlainLion,
        exact=False,
        lr=0.01,
        betas=(0.5, 0.9),
        maximize=True,
        half=(1, 1),
    ),
    case("muon", "Muon", tensors=matrices, selects=matrices_only, lr=0.02),
    case(
        "muon-plain-rms",
        "Muon",
        tensors=matrices,
        selects=matrices_only,
        lr=0.02,
        nesterov=False,
        adjust_lr_fn="match_rms_adamw",
        half=(0, TORCH_MUON_BF16),
    ),
]

#: The first case of each optimizer: its reference and parameters, for tests that draw
#: their own options (hypothesis).
BY_NAME = {c.name: c for c in reversed(CASES)}
