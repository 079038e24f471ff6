"""Who races: one record per optimizer, and the contenders built from it.

A contender is one implementation of an optimizer: minioptim's default path (and its
reference and compiled paths, and each precision mode on half-precision parameters), and
torch's for-loop (``foreach=False``), ``foreach=True`` and ``fused=True`` where torch has
them. torch.optim has no SignSGD and no Lion; their torch contenders are
:mod:`minioptim.bench.baselines`, a for-loop and a ``_foreach`` version.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import minioptim
from minioptim.precision import Precision

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


class CapturedStep:
    """minioptim's ``step()`` captured once in a CUDA graph (``capturable=True``); each
    ``step()`` replays it: the host launches one graph instead of the step's Python and
    kernels. Three eager steps on a side stream first, as ``torch.cuda.graph`` asks."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer.param_groups[0]["params"][0].device.type != "cuda":
            raise RuntimeError("a captured step needs a CUDA device")
        self.optimizer = optimizer
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                optimizer.step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            optimizer.step()

    def step(self) -> None:
        self.graph.replay()

    @property
    def state(self) -> dict:
        return self.optimizer.state


@dataclass(frozen=True)
class Contender:
    """One implementation: its label, how to build it on a list of parameters, whether
    it is a torch baseline (the ratios are against the fastest of those), and its
    precision mode (``"plain"`` for torch's: it has no other)."""

    label: str
    build: Factory
    torch: bool
    precision: str = "plain"


@dataclass(frozen=True)
class Optimizer:
    """Everything the benchmark knows about one optimizer.

    ``torch``: the class of its torch contenders, built with each of ``variants`` (label:
    keyword arguments). ``states``: the state tensors it keeps per parameter (Adam: m and
    v, 2); ``None`` where the step is not memory-bound (Muon's matrix products), which
    leaves its bytes per step unknown (:meth:`step_bytes`). ``matrices``: it takes 2-d
    parameters only. ``takes_impl``: its ``__init__`` takes ``impl=`` (and
    ``precision=``); a student's class does not, and is switched with
    ``optimizer.impl = ...`` after it is built.
    """

    name: str
    minioptim: type[torch.optim.Optimizer]
    torch: Callable[..., torch.optim.Optimizer]
    hyper: dict[str, Any]
    states: int | None
    traffic: str
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: TORCH)
    matrices: bool = False
    takes_impl: bool = True

    @property
    def arrays(self) -> int | None:
        """The tensors an ideal step reads plus those it writes, each once: p and each
        state read and written, g read (Adam: 7); ``None`` where ``states`` is."""
        return None if self.states is None else 3 + 2 * self.states

    def step_bytes(self, dtype: torch.dtype, precision: str = "plain") -> float:
        """Bytes one step must move per parameter, in precision mode ``precision``: each
        tensor the update reads, plus each it writes, in its own dtype; NaN where
        ``states`` is ``None``. Per parameter of a half-precision ``dtype`` (h bytes) with
        ``k`` state tensors:

        ============  ===============================================  ==============
        mode          reads and writes                                 bf16 Adam, SGD
        ============  ===============================================  ==============
        plain         p r+w, g r, state r+w (h each): h (3 + 2k)       14, 10
        stochastic    the same: the random bits are computed, not read 14, 10
        kahan         plus the compensation c r+w (h): h (5 + 2k)      18, 14
        master        master weights r+w (4), p written only (the      28, 20
                      rounded master weights), g r, float32 state r+w:
                      8 + 2h + 8k
        ============  ===============================================  ==============

        float32 (and float64) parameters ignore the mode: ``arrays`` times their size.
        """
        if self.arrays is None:
            return math.nan
        mode, item = Precision(precision), dtype.itemsize
        if not mode.applies(dtype):
            return self.arrays * item
        state = 2 * self.states * mode.rule_state_dtype(dtype).itemsize  # read and written
        weights = {
            "stochastic": 2 * item,  # p read and written
            "kahan": 4 * item,  # p and the compensation, read and written
            "master": item + 2 * torch.float32.itemsize,  # p written; master r+w
        }[precision]
        return weights + item + state  # the gradient, read

    def contenders(
        self,
        reference: bool = True,
        only: tuple[str, ...] = (),
        compiled: bool = False,
        captured: bool = False,
    ) -> list[Contender]:
        """minioptim (``impl="auto"``), its reference path, and the torch variants.

        ``compiled``: add minioptim's ``impl="compiled"`` where the step is memory-bound
        (``states`` is known), the steps a generated kernel is for. ``captured`` (CUDA):
        add ``"minioptim captured"``, its default step replayed as a CUDA graph
        (:class:`CapturedStep`), where the class takes ``capturable=``. ``only``: keep the
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
        if captured and self.takes_impl:
            build = lambda ps: CapturedStep(self.build(ps, "auto", capturable=True))  # noqa: E731
            result.append(Contender("minioptim captured", build, False))
        return result + self.torch_contenders(only)

    def precision_contenders(
        self, modes: tuple[str, ...], only: tuple[str, ...] = (), compiled: bool = False
    ) -> list[Contender]:
        """minioptim in each precision mode of ``modes`` (labelled ``"minioptim kahan"``),
        on its default path and, with ``compiled``, on ``impl="compiled"`` (``"minioptim
        kahan compiled"``; on CUDA the default path is the compiled one too), and the
        torch variants (``only``: as in :meth:`contenders`), which have no such modes:
        plain steps, for reference."""
        impls = {"": "auto", " compiled": "compiled"} if compiled else {"": "auto"}
        result = [
            Contender(
                f"minioptim {mode}{suffix}",
                lambda ps, impl=impl, mode=mode: self.build(ps, impl, precision=mode),
                False,
                mode,
            )
            for mode in modes
            for suffix, impl in impls.items()
        ]
        return result + self.torch_contenders(only)

    def torch_contenders(self, only: tuple[str, ...] = ()) -> list[Contender]:
        """The torch variants whose label ends with a word of ``only``, or all of them
        where none does."""
        kept = [label for label in self.variants if label.split()[-1] in only]
        result = []
        for label in kept or list(self.variants):
            flags = self.variants[label]
            build = lambda ps, flags=flags: self.torch(ps, **self.hyper, **flags)  # noqa: E731
            result.append(Contender(label, build, True))
        return result

    def build(self, params: list[torch.Tensor], impl: str, **options) -> torch.optim.Optimizer:
        """minioptim's optimizer on ``params``, taking the path ``impl``, with more
        keyword arguments ``options`` (``precision=``)."""
        if self.takes_impl:
            return self.minioptim(params, impl=impl, **self.hyper, **options)
        optimizer = self.minioptim(params, **self.hyper, **options)
        if impl != "auto":
            optimizer.impl = impl
        return optimizer


OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        Optimizer(
            "sgd", minioptim.SGD, torch.optim.SGD, dict(lr=1e-3, momentum=0.9),
            states=1, traffic="read p,g,m; write p,m",
        ),
        Optimizer(
            "adam", minioptim.Adam, torch.optim.Adam, dict(lr=1e-3),
            states=2, traffic="read p,g,m,v; write p,m,v",
        ),
        Optimizer(
            "adamw", minioptim.AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2),
            states=2, traffic="read p,g,m,v; write p,m,v",
        ),
        Optimizer(
            "signsgd", minioptim.SignSGD, baselines.Signum,
            dict(lr=1e-3, momentum=0.9, weight_decay=1e-2),
            states=1, traffic="Signum: read p,g,m; write p,m", variants=BENCH,
        ),
        Optimizer(
            "lion", minioptim.Lion, baselines.Lion, dict(lr=1e-4, weight_decay=1e-2),
            states=1, traffic="read p,g,m; write p,m", variants=BENCH,
        ),
        Optimizer(
            "rmsprop", student.RMSprop, torch.optim.RMSprop, dict(lr=1e-3),
            states=1, traffic="a student's rule: read p,g,v; write p,v", variants=UNFUSED,
            takes_impl=False,
        ),
        Optimizer(
            "muon", minioptim.Muon, torch.optim.Muon, dict(lr=2e-2),
            states=None, traffic="Newton-Schulz matrix products: not memory-bound",
            variants={"torch for-loop": {}}, matrices=True,  # torch has one implementation
        ),
    )
}  # fmt: skip
