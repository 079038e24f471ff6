"""How the grader explains a failure: what diverged first and by how much, the error a
solution raised, and a hint when no typical mistake fits."""

from __future__ import annotations

import math
import re
import sysconfig
import traceback
from pathlib import Path

import torch

from ..base import FusedOptimizer
from .specs import Spec

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
    "zero": (
        "Your optimizer agrees when the first gradients are nonzero, but not when "
        "they are 0: a buffer that is still 0 after a step is no sign of the first "
        "step. Use the step argument: step == 1 at a parameter's first update."
    ),
    "large": (
        "Your optimizer agrees while the trust ratios are small, but not when a "
        "parameter is 100 times larger and its ratio ||p|| / ||r|| is far above 10: "
        "the assignment's trust ratio has no upper bound, though some implementations "
        "clip it."
    ),
    "gradient changed": (
        "Leave the gradient as it is: grad is p.grad itself, so grad.add_(param, "
        "alpha=weight_decay) writes weight decay into the gradient the user sees "
        "after step(). Write grad = grad.add(param, alpha=weight_decay), a new tensor."
    ),
    "own state": (
        "Your optimizer keeps tensors of its own in {names}: its state never sees "
        "them, so state_dict() does not save them and load_state_dict() does not "
        "restore them, and a key such as id(param) names a slice of the flat buffer, "
        "not a parameter. Declare each entry in state_names and use it through the "
        "state argument: state['name']."
    ),
    "per parameter": (
        "Something runs once per parameter. Compute every tensor's norm at once "
        "with layout.norm(...), and broadcast the ratios back with layout.expand(...)."
    ),
    "to Python": (
        "Something turns tensors into Python numbers (tolist, item, numpy, float) and "
        "works on them one by one, once per parameter: on a GPU each conversion waits "
        "for the device. Keep the ratios in tensors: torch.where((w > 0) & (u > 0), "
        "w / u, torch.ones_like(w))."
    ),
    "not a FusedOptimizer": "Write it as a subclass of minioptim.FusedOptimizer.",
}


DIVERGENCE = re.compile(
    r"^step (?P<step>\d+), parameter (?P<param>\d+) \(shape (?P<shape>\([^)]*\))\)"
    r"(?:, state\[(?P<entry>'[^']*')\])?: (?P<message>.*)",
    re.DOTALL,
)
GREATEST = re.compile(r"Greatest (absolute|relative) difference: (\S+)")


def describe_divergence(error: AssertionError, first: int = 0) -> tuple[list[str], dict]:
    """Read assert_same_trajectory's message: where it diverged first, and how much.

    ``first``: the steps taken before the comparison began (from a checkpoint), added
    to the step the message names.
    """
    text = str(error)
    match = DIVERGENCE.match(text)
    if match is None:
        return [shorten(text)], {}
    found = match.groupdict()
    found["step"] = str(int(found["step"]) + first)
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


def shorten(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][:lines]
    return " ".join(kept)


def describe_error(error: BaseException) -> tuple[list[str], str | None]:
    """What to show for an error raised by a student's optimizer, and a hint."""
    name = type(error).__name__
    message = error.args[0] if len(error.args) == 1 else str(error)
    message = str(message)
    if isinstance(error, NotImplementedError):
        return [f"not implemented yet ({message or 'NotImplementedError'})"], None
    details = [f"raised {name}: {shorten(message)}"]
    where = _student_frame(error)
    if where:
        details.append(where)
    hint = None
    if "replaced state" in message:
        hint = GENERAL_HINTS["replaced"]
    elif "changed grad in place" in message:
        hint = GENERAL_HINTS["gradient changed"]
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
    for folder in (
        Path(__file__).parents[1],  # minioptim
        Path(torch.__file__).parent,
        sysconfig.get_path("stdlib"),
    )
)


def _student_frame(error: BaseException) -> str | None:
    """``in update, line 12: v = ...``: the innermost frame of the student's own code."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(folder) for folder in LIBRARIES):
            line = f": {frame.line}" if frame.line else ""
            return f"in {frame.name}, line {frame.lineno}{line}"
    return None


def same_step(rows: list, step: int, entry: str | None, first: int = 0) -> str:
    """What else differs at the step of the first divergence (over all parameters);
    ``step`` counts the rows, ``first`` the steps before them."""
    name = "param" if entry is None else entry.strip("'")
    others = {other: size for other, (size, differs) in rows[step - 1].items() if differs}
    others.pop(name, None)
    states = [other for other in rows[step - 1] if other != "param"]
    step += first
    if others:
        listed = ", ".join(
            ("the parameters" if other == "param" else f"state[{other!r}]") + _by(size)
            for other, size in others.items()
        )
        return f"at step {step} also {listed}"
    if name == "param" and states:
        return f"at step {step} every state entry agrees"
    return f"at step {step} nothing else differs"


def _by(size: float) -> str:
    return " (missing or shaped differently)" if math.isinf(size) else f" (by up to {size:.1e})"


def where_hint(rows: list, spec: Spec) -> str:
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
    if math.isinf(rows[step - 1][entry][0]):
        return (
            f"state[{entry!r}] is not kept alike by yours and the reference (missing in "
            f"one, or shaped differently): the grader expects the state names {spec.state}."
        )
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


def tensor_attributes(optimizer: FusedOptimizer) -> list[str]:
    """The attributes, beyond those every FusedOptimizer has, that hold tensors (also
    in a dict, list or tuple): a state of the optimizer's own."""
    known = _plain_attributes()
    return [
        name
        for name, value in vars(optimizer).items()
        if name not in known and _holds_tensors(value)
    ]


def _holds_tensors(value: object, depth: int = 2) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if depth == 0:
        return False
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return any(_holds_tensors(item, depth - 1) for item in value)
    return False


def _plain_attributes() -> set[str]:
    """The attributes of a FusedOptimizer that has taken a step."""

    class Plain(FusedOptimizer):
        def update(self, group, param, grad, state, step):
            param.add_(grad, alpha=-group["lr"])

    param = torch.zeros(1, requires_grad=True)
    optimizer = Plain([param], {"lr": 0.1})
    param.grad = torch.ones(1)
    optimizer.step()
    return set(vars(optimizer))
