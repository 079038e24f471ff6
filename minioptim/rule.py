"""Rule: a built-in optimizer's update, declared once as plain functions.

A rule names a reference function from :mod:`minioptim.functional` and, optionally, a fast
one with the same arguments. Each is called as::

    function(param, grad, **state, step=step, layout=layout, **hyper)

where ``state`` holds the flat state slices by their declared names and ``hyper`` holds,
for every other keyword-only argument of the reference function, the param group's value
of the same name. So the function's signature *is* the declaration: ``sgd_(..., *, lr,
momentum, ...)`` reads ``group["lr"]``, ``group["momentum"]``, ... at every step, as
learning-rate schedulers expect. ``step`` and ``layout`` are passed only to functions
that take them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from .layout import Layout

CONTEXT = ("step", "layout")  # keyword arguments that come from the run, not the group


def hyper_value(value: Any) -> Any:
    """A group value as the rule sees it: a 1-element tensor becomes 0-d, as in torch.optim."""
    if isinstance(value, torch.Tensor) and value.dim() != 0:
        return value.squeeze()
    if isinstance(value, tuple | list) and any(isinstance(v, torch.Tensor) for v in value):
        return type(value)(hyper_value(v) for v in value)
    return value


class Rule:
    """The reference function of an update rule and, optionally, a faster equivalent."""

    def __init__(self, reference: Callable[..., None], fast: Callable[..., None] | None = None):
        self.reference = reference
        self.fast = fast
        keywords = [
            name
            for name, parameter in inspect.signature(reference).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        self.context = tuple(name for name in keywords if name in CONTEXT)
        self.hyper = tuple(name for name in keywords if name not in CONTEXT)

    def __call__(
        self,
        function: Callable[..., None],
        group: dict[str, Any],
        param: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, torch.Tensor],
        step: int,
        layout: Layout | None = None,
    ) -> None:
        run = {"step": step, "layout": layout}
        options = {name: run[name] for name in self.context}
        options.update({name: hyper_value(group[name]) for name in self.hyper})
        function(param, grad, **state, **options)
