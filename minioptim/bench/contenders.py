"""Who races: one record per optimizer, and the contenders built from it.

A contender is one implementation of an optimizer: minioptim's default path (and its
reference and compiled paths), and torch's for-loop (``foreach=False``), ``foreach=True``
and ``fused=True`` where torch has them. torch.optim has no SignSGD and no Lion; their torch
contenders are :mod:`minioptim.bench.baselines`, a for-loop and a ``_foreach`` version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import minioptim

from . import baselines, student

Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]

#: torch.optim's three implementations, by contender label: its keyword arguments.
TORCH = {
    "torch for-loop": dict(foreach=False),
    "torch foreach": dict(foreach=True),
    "torch fused": dict(fused=True),
}
#: The two of :mod:`~minioptim.bench.baselines`, for SignSGD and Lion.
BENCH = {"bench for-loop": dict(foreach=False), "bench foreach": dict(foreach=True)}
#: torch.optim's implementations of an optimizer that has no fused kernel (RMSprop).
UNFUSED = {"torch for-loop": dict(foreach=False), "torch foreach": dict(foreach=True)}


@dataclass(frozen=True)
class Contender:
    """One implementation: its label, how to build it on a list of parameters, and whether
    it is a torch baseline (the ratios are against the fastest of those)."""

    label: str
    build: Factory
    torch: bool


@dataclass(frozen=True)
class Optimizer:
    """Everything the benchmark knows about one optimizer.

    ``torch``: the class of its torch contenders, built with each of ``variants`` (label:
    keyword arguments). ``arrays``: the tensors an ideal step reads plus those it writes,
    each once (Adam reads p, g, m, v and writes p, m, v: 7); times the element size, the
    bytes it must move per parameter; ``None`` where the step is not memory-bound (Muon's
    matrix products). ``matrices``: it takes 2-d parameters only. ``takes_impl``: its
    ``__init__`` takes ``impl=``; a student's class does not, and is switched with
    ``optimizer.impl = ...`` after it is built.
    """

    name: str
    minioptim: type[torch.optim.Optimizer]
    torch: Callable[..., torch.optim.Optimizer]
    hyper: dict[str, Any]
    arrays: int | None
    traffic: str
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: TORCH)
    matrices: bool = False
    takes_impl: bool = True

    def contenders(
        self, reference: bool = True, only: tuple[str, ...] = (), compiled: bool = False
    ) -> list[Contender]:
        """minioptim (``impl="auto"``), its reference path, and the torch variants.

        ``compiled``: add minioptim's ``impl="compiled"`` where the step is memory-bound
        (``arrays`` is known), the steps a generated kernel is for. ``only``: keep the
        torch variants whose label ends with one of these words, or all of them where none
        does (Muon's one implementation is a for-loop). A class without ``impl=`` (a
        student's) has no reference contender: its default path is its rule.
        """
        impls = {"minioptim": "auto"}
        if reference and self.takes_impl:
            impls["minioptim reference"] = "reference"
        if compiled and self.arrays is not None:
            impls["minioptim compiled"] = "compiled"
        result = [
            Contender(label, lambda ps, impl=impl: self.build(ps, impl), False)
            for label, impl in impls.items()
        ]
        kept = [label for label in self.variants if label.split()[-1] in only]
        for label in kept or list(self.variants):
            flags = self.variants[label]
            build = lambda ps, flags=flags: self.torch(ps, **self.hyper, **flags)  # noqa: E731
            result.append(Contender(label, build, True))
        return result

    def build(self, params: list[torch.Tensor], impl: str) -> torch.optim.Optimizer:
        """minioptim's optimizer on ``params``, taking the path ``impl``."""
        if self.takes_impl:
            return self.minioptim(params, impl=impl, **self.hyper)
        optimizer = self.minioptim(params, **self.hyper)
        if impl != "auto":
            optimizer.impl = impl
        return optimizer


OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        Optimizer(
            "sgd", minioptim.SGD, torch.optim.SGD, dict(lr=1e-3, momentum=0.9),
            arrays=5, traffic="read p,g,m; write p,m",
        ),
        Optimizer(
            "adam", minioptim.Adam, torch.optim.Adam, dict(lr=1e-3),
            arrays=7, traffic="read p,g,m,v; write p,m,v",
        ),
        Optimizer(
            "adamw", minioptim.AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2),
            arrays=7, traffic="read p,g,m,v; write p,m,v",
        ),
        Optimizer(
            "signsgd", minioptim.SignSGD, baselines.Signum,
            dict(lr=1e-3, momentum=0.9, weight_decay=1e-2),
            arrays=5, traffic="Signum: read p,g,m; write p,m", variants=BENCH,
        ),
        Optimizer(
            "lion", minioptim.Lion, baselines.Lion, dict(lr=1e-4, weight_decay=1e-2),
            arrays=5, traffic="read p,g,m; write p,m", variants=BENCH,
        ),
        Optimizer(
            "rmsprop", student.RMSprop, torch.optim.RMSprop, dict(lr=1e-3),
            arrays=5, traffic="a student's rule: read p,g,v; write p,v", variants=UNFUSED,
            takes_impl=False,
        ),
        Optimizer(
            "muon", minioptim.Muon, torch.optim.Muon, dict(lr=2e-2),
            arrays=None, traffic="Newton-Schulz matrix products: not memory-bound",
            variants={"torch for-loop": {}}, matrices=True,  # torch has one implementation
        ),
    )
}  # fmt: skip
