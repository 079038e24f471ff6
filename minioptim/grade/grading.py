"""Grading: run an assignment's checks on your classes (:func:`run`, :func:`grade`), or
look at the differences yourself (:func:`compare`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..base import FusedOptimizer
from .assignments import ASSIGNMENTS
from .hints import GENERAL_HINTS, describe_error
from .report import INDENT, GradingFailed, Report, Result, wrap
from .trajectories import make_tensors, trace


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

    Called with your classes, e.g. ``grade("assignment2", RMSprop=RMSprop,
    Adagrad=Adagrad)`` in the assignment's notebook.

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

    For example ``compare(MomentumSGD, torch.optim.SGD, lr=0.1, momentum=0.9)`` with your
    ``MomentumSGD``.
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
        details, hint = describe_error(error)
        print(*wrap(f"{name}: {' '.join(details)}", "", INDENT), sep="\n")
        if hint:
            print(*wrap(f"hint: {hint}", INDENT, INDENT), sep="\n")
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
