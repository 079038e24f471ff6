"""The three kinds of checks: a trajectory against the reference (:class:`Trajectory`),
the validation of hyper-parameters (:class:`Validation`), and no Python loop over the
parameters (:class:`Fused`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..testing import assert_same_trajectory, leaf_copies, random_gradient, set_gradient
from .hints import (
    GENERAL_HINTS,
    describe_divergence,
    describe_error,
    same_step,
    tensor_attributes,
    where_hint,
)
from .loops import with_mistake
from .report import Result, format_hyper
from .specs import Spec, accepts
from .trajectories import (
    ATOL,
    CHECKPOINT_STEPS,
    GRADIENTS,
    RTOL,
    SEED,
    SHAPES,
    STEPS,
    loaded,
    make_tensors,
    trace,
    train,
)


@dataclass
class Trajectory:
    """Your optimizer and the reference, side by side for STEPS steps.

    ``variant`` is None (every parameter gets a gradient at every step), ``"late"``
    (parameter LATE gets none for its first LATE_STEPS steps), ``"zero"`` (every
    first gradient is 0),
    ``"large"`` (parameter LARGE starts LARGE_FACTOR times larger), ``"groups"``
    (parameter 0 has a param group of its own, with ``group0``), ``"from torch"`` (both
    continue from the reference's checkpoint after CHECKPOINT_STEPS steps) or
    ``"to torch"`` (both continue from yours).
    """

    spec: Spec
    label: str
    hyper: dict[str, Any]
    variant: str | None = None
    group0: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        name = f"{self.spec.name}, {self.label} ({format_hyper(self.hyper)}"
        if self.variant == "groups":
            name += f"; parameter 0's group: {format_hyper(self.group0)}"
        return name + ")"

    def setup(self, cls: Callable, other: Callable, hyper: dict | None = None):
        """The check's two factories, starting tensors and gradients."""
        hyper = self.hyper if hyper is None else hyper
        variant = self.variant
        mine = self.spec.make(cls, hyper, self.group0 if variant == "groups" else None)
        theirs = self.spec.make(other, hyper, self.group0 if variant == "groups" else None)
        tensors = make_tensors(large=variant == "large")
        gradient = GRADIENTS.get(variant, random_gradient)
        if variant in ("from torch", "to torch"):
            trainer = theirs if variant == "from torch" else mine
            tensors, saved = train(trainer, tensors, CHECKPOINT_STEPS)
            mine, theirs = loaded(mine, saved), loaded(theirs, saved)
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
        # after a checkpoint, steps are counted from the start, as the state's 'step'
        first = CHECKPOINT_STEPS if self.variant in ("from torch", "to torch") else 0
        try:
            self.compare(cls, self.spec.reference)
        except AssertionError as error:
            details, divergence = describe_divergence(error, first)
            try:
                rows = self.trace(cls)
            except Exception:
                rows = []
            if "step" in divergence and rows:
                step = int(divergence["step"]) - first
                details.append(same_step(rows, step, divergence["entry"], first))
            if first:
                details[0] = f"after loading a checkpoint saved at step {first}: {details[0]}"
            hint = self.diagnose(cls, divergence, rows)
            return Result(self.name, False, details, hint)
        except Exception as error:
            details, hint = describe_error(error)
            kept = "" if hint else self.own_tensors(cls)
            if kept:  # a checkpoint without the state it keeps elsewhere
                hint = GENERAL_HINTS["own state"].format(names=kept)
            return Result(self.name, False, details, hint)
        return Result(self.name, True)

    def diagnose(self, cls: type, divergence: dict, rows: list) -> str:
        """Find a hint: a state of its own, a typical mistake, a variant, a feature, or
        where it diverged."""
        spec = self.spec
        kept = self.own_tensors(cls)
        if kept:
            return GENERAL_HINTS["own state"].format(names=kept)
        if "keys" in divergence:
            return f"The grader expects the state names {spec.state}."
        for mistake, hint in spec.loop.mistakes.items():
            if self.agrees(cls, with_mistake(spec.loop, mistake)):
                return hint
        if self.variant is not None:
            plain = Trajectory(spec, self.label, self.hyper)
            if plain.agrees(cls, spec.reference):
                return GENERAL_HINTS[self.variant]
        hyper = {**spec.loop.hyper, **self.hyper}  # with the defaults it did not set
        for name, off in spec.switches.items():
            if hyper[name] != off:
                switched = {**self.hyper, name: off}
                if accepts(spec.reference, switched) and self.agrees(cls, spec.reference, switched):
                    return spec.feature_hints[name]
        return where_hint(rows, self.spec)

    def own_tensors(self, cls: type) -> str:
        """Where ``cls`` keeps tensors beside its state after two steps of this check
        (``"self.x, self.y"``), or ``""``."""
        gen = torch.Generator().manual_seed(SEED)
        try:
            mine, _, tensors, gradient = self.setup(cls, self.spec.reference)
            params = leaf_copies(tensors)
            optimizer = mine(params)
            for step in (1, 2):
                for index, p in enumerate(params):
                    set_gradient(p, gradient(step, index, p, gen))
                optimizer.step()
        except Exception:
            return ""
        return ", ".join(f"self.{name}" for name in tensor_attributes(optimizer))


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
                    problem = f"rejects valid hyper-parameters {format_hyper(hyper)}: {error}"
                    return Result(self.name, False, [problem], "Accept the edge cases. " + hint)
        except Exception as error:
            return Result(self.name, False, *describe_error(error))
        return Result(self.name, True)

    @staticmethod
    def _rejects(cls: type, hyper: dict, argument: str, later: bool = False) -> str | None:
        """None if ``cls`` rejects ``hyper`` as asked, else what is wrong."""
        said = format_hyper(hyper)
        try:
            if later:  # in a param group added after construction
                optimizer = cls([torch.zeros(2, requires_grad=True)])
                optimizer.add_param_group({"params": [torch.zeros(2)], **hyper})
            else:
                cls([torch.zeros(2, requires_grad=True)], **hyper)
        except ValueError as error:
            if not names(str(error), argument):
                return f"{said}: the ValueError does not name {argument!r}: {error}"
            if not later:
                return Validation._rejects(cls, hyper, argument, later=True)
            return None
        where = " in a param group added later" if later else ""
        return f"{said}: accepted{where}; it should raise ValueError"


def names(message: str, argument: str) -> bool:
    """Whether an error message names the argument: in any case, with spaces for
    underscores, and lr also as "learning rate" (torch.optim's own messages pass)."""
    said = message.lower().replace("_", " ")
    spellings = [argument, "learning rate"] if argument == "lr" else [argument]
    return any(spelling.replace("_", " ") in said for spelling in spellings)


class CountOps(TorchDispatchMode):
    """Count the ATen operations run inside a ``with`` block (as in lecture 5)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


# The methods that turn tensor elements into Python numbers; the elements they convert
# are work that no ATen operation counts (a loop over w.tolist(), say).
CONVERSIONS = {"tolist", "numpy", "item", "__float__", "__int__", "__index__", "__bool__"}


class CountConversions(TorchFunctionMode):
    """Count the tensor elements turned into Python numbers inside a ``with`` block."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in CONVERSIONS:
            self.elements += args[0].numel()
        return func(*args, **(kwargs or {}))


@dataclass
class Work:
    """What one ``update`` did: ATen operations, and elements converted to Python."""

    ops: int
    elements: int


@dataclass
class Fused:
    """No Python loop over the parameters: the number of tensor operations of one
    ``update`` on 3 * COPIES parameters must be the count on 3 parameters, give or take
    fewer than one operation per two extra parameters; and so must the number of tensor
    elements it turns into Python numbers."""

    spec: Spec
    hyper: dict[str, Any]
    copies: int = 10
    name: str = ""

    def __post_init__(self):
        self.name = f"{self.spec.name}, no Python loop over the parameters"

    def count(self, cls: type, copies: int) -> Work:
        """The work of one update of ``cls`` (after a first step) on 3 * copies params."""
        ops, conversions = CountOps(), CountConversions()
        if "layout" in inspect.signature(cls.update).parameters:

            class Counted(cls):
                def update(self, group, param, grad, state, step, layout):
                    with ops, conversions:
                        return super().update(group, param, grad, state, step, layout)

        else:

            class Counted(cls):
                def update(self, group, param, grad, state, step):
                    with ops, conversions:
                        return super().update(group, param, grad, state, step)

        Counted.__name__ = Counted.__qualname__ = cls.__name__  # for error messages
        params = leaf_copies(make_tensors(copies))
        optimizer = Counted(params, **self.hyper)
        gen = torch.Generator().manual_seed(SEED)
        for _ in range(2):
            ops.ops = conversions.elements = 0
            for index, p in enumerate(params):
                set_gradient(p, random_gradient(1, index, p, gen))
            optimizer.step()
        return Work(ops.ops, conversions.elements)

    def run(self, cls: type) -> Result:
        try:
            few, many = self.count(cls, 1), self.count(cls, self.copies)
        except Exception as error:
            return Result(self.name, False, *describe_error(error))
        n_few, n_many = len(SHAPES), len(SHAPES) * self.copies
        slack = (n_many - n_few) / 2  # fewer than one per two extra parameters
        if many.ops - few.ops >= slack:
            details = [
                f"one update ran {few.ops} tensor operations on {n_few} parameters and "
                f"{many.ops} on {n_many}"
            ]
            return Result(self.name, False, details, GENERAL_HINTS["per parameter"])
        if many.elements - few.elements >= slack:
            details = [
                f"one update turned {few.elements} tensor elements into Python numbers "
                f"on {n_few} parameters and {many.elements} on {n_many}"
            ]
            return Result(self.name, False, details, GENERAL_HINTS["to Python"])
        return Result(self.name, True)
