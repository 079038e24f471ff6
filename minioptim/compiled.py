"""``impl="compiled"``: the readable rule, compiled by ``torch.compile`` into generated kernels.

The rule an optimizer runs on a bucket (a built-in rule from :mod:`minioptim.functional`,
or a student's ``update`` method) is a few elementwise operations over flat tensors. Run
eagerly, each operation reads and writes the whole bucket; compiled, inductor fuses the
chain into one loop (C++ on a CPU, Triton on a GPU) that reads each tensor once. The
source stays the readable rule: nothing is written twice.

Three things keep one compiled graph valid for every step and every optimizer:

- the values that change from step to step, ``lr`` (a scheduler's), ``step`` and the
  numbers that :meth:`~minioptim.FusedOptimizer.prepare` returns for the step, reach
  the rule as 0-d tensors on the parameters' device, so they are inputs of the graph, not
  constants baked into it (a Python float would be specialized: one recompilation per
  learning rate). Each is a new tensor at every call, filled on the device: on a GPU
  a queued kernel, so the step never waits for the device, and work queued on another
  stream never sees the value change under it;
- sizes are dynamic, so buckets and runs of other lengths share the graph;
- what is compiled is the rule's function (``adam_``, a class's ``update``), never a
  bound method, so two optimizers of one class share their graphs (up to
  ``RECOMPILE_LIMIT`` variants: dtypes, flags, first step).

One operation needs help: inductor (torch 2.13, CPU) compiles ``x.sub_(y, alpha=t)``
with a 0-d float64 tensor ``t`` that is an input of the graph as if ``t`` were the
constant it held at the first call: later steps subtract with the first learning rate,
silently. ``param.sub_(update, alpha=group["lr"])`` is how many rules are written, so
while a rule is compiled, :class:`TensorAlphaSubtraction` rewrites such a call as the
addition ``x.add_(y, alpha=-t)``, which compiles correctly (the tests check both).

A rule that branches on the step (SGD's ``if step == 1``) cannot take it as a tensor; it
is traced again with ``step`` as an integer, which gives one graph for the first step
and one for the others. A rule that cannot be compiled at all runs eagerly, after one
warning that says why. The tests check every compiled rule against the reference rule
(to float rounding: inductor fuses multiply-adds).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# The ways of passing ``step`` to try, in order; "eager" is the fallback.
ATTEMPTS = ("tensor", "int")
# Graphs per rule function: one per dtype, flag combination (nesterov, weight decay or
# not, ...) and, for step-branching rules, first step or not. torch's default is 8.
RECOMPILE_LIMIT = 64


def as_tensor(value: Any, device: torch.device) -> Any:
    """A Python number as a 0-d tensor on ``device`` (a graph input), in float64 where the
    device has it (MPS has not); anything else (a tensor ``lr``, a step on the device) as
    it is."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        dtype = torch.float32 if device.type == "mps" else torch.float64
        return torch.full((), float(value), dtype=dtype, device=device)
    return value


class TensorAlphaSubtraction(TorchFunctionMode):
    """While active: ``sub``/``sub_`` with a tensor ``alpha`` run as ``add``/``add_`` with
    ``alpha=-alpha`` (the same numbers; see the module's doc for the compiler bug)."""

    ADDITION = {
        torch.Tensor.sub_: torch.Tensor.add_,
        torch.Tensor.sub: torch.Tensor.add,
        torch.sub: torch.add,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.ADDITION and isinstance(kwargs.get("alpha"), torch.Tensor):
            kwargs = dict(kwargs)
            alpha = kwargs.pop("alpha")
            return self.ADDITION[func](*args, alpha=-alpha, **kwargs)
        return func(*args, **kwargs)


class CompiledRule:
    """A rule function, called compiled while it compiles, eagerly after it failed.

    ``method=True``: ``function`` is an ``update(self, group, param, grad, state, step,
    ...)``, whose ``group["lr"]`` and ``step`` are made tensors; otherwise a function of
    :mod:`minioptim.functional`, whose ``lr`` and ``step`` keywords are.
    """

    def __init__(self, function: Callable[..., None], method: bool) -> None:
        self.function = function
        self.method = method
        self.compiled = torch.compile(function, fullgraph=True, dynamic=True)
        self.attempts = list(ATTEMPTS)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device = (args[2] if self.method else args[0]).device  # the parameters'
        while self.attempts:
            how = self.attempts[0]
            try:
                limit = torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT)
                with limit, TensorAlphaSubtraction():
                    return self.compiled(
                        *self._args(args, how, device), **self._kwargs(kwargs, how, device)
                    )
            except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.UserError) as error:
                self.attempts.pop(0)  # a step-dependent branch, say: try the next way
                reason = error
            except Exception as error:  # inductor or the C++/Triton compiler failed
                self.attempts.clear()
                reason = error
            if not self.attempts:
                first_line = (str(reason).strip().splitlines() or [""])[0]
                warnings.warn(
                    f"impl='compiled' cannot compile {self.function.__qualname__}, so it runs "
                    "eagerly (same results, not fused; under impl='auto', from the next step on "
                    f"the path it takes on a CPU): {type(reason).__name__}: {first_line}",
                    stacklevel=5,
                )
        return self.function(*args, **kwargs)

    @property
    def failed(self) -> bool:
        """Whether compiling failed for good: the rule now runs eagerly."""
        return not self.attempts

    def _args(self, args: tuple, how: str, device: torch.device) -> tuple:
        if not self.method:
            return args
        self_, group, param, grad, state, step, *rest = args
        if "lr" in group:
            group = {**group, "lr": as_tensor(group["lr"], device)}
        step = as_tensor(step, device) if how == "tensor" else step
        return (self_, group, param, grad, state, step, *rest)

    def _kwargs(self, kwargs: dict, how: str, device: torch.device) -> dict:
        if self.method:
            return kwargs
        kwargs = dict(kwargs)
        if "lr" in kwargs:
            kwargs["lr"] = as_tensor(kwargs["lr"], device)
        if "step" in kwargs and how == "tensor":
            kwargs["step"] = as_tensor(kwargs["step"], device)
        return kwargs


@functools.cache
def compiled(function: Callable[..., None], method: bool = False) -> CompiledRule:
    """The :class:`CompiledRule` of ``function``, one per function for the process."""
    return CompiledRule(function, method)
