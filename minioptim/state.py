"""State: how an update rule declares the per-parameter state it keeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Shape = Sequence[int] | Callable[[torch.Size], Sequence[int]] | None
Condition = Callable[[torch.Size], bool] | None


@dataclass(frozen=True)
class State:
    """One per-parameter state tensor of an update rule.

    ``FusedOptimizer.state_names`` returns these (a plain string ``"velocity"`` means
    ``State("velocity")``). The bucket keeps each state as one flat tensor; the update
    sees the slice that belongs to its parameters, and ``state_dict()`` shows it per
    parameter, in the declared shape.

    Parameters
    ----------
    name:
        The key in the update's ``state`` and in ``state_dict()``.
    init:
        The value it holds before a parameter's first update: a number (Adagrad's
        ``initial_accumulator_value``; default 0), or a function ``init(param, grad)``
        of the flat values and gradients of the parameters that start, returning their
        flat initial state (schedule-free's ``z = p``: ``lambda param, grad: param``;
        Adan's previous gradient: ``lambda param, grad: grad``). The result is copied.
    shape:
        ``None`` (default): the parameter's shape. A tuple: that shape for every parameter,
        e.g. ``()`` for one number per parameter (then the update sees a 1-d tensor with
        one entry per parameter, in the order of ``layout.params``). Or a function of the
        parameter's shape, e.g. ``lambda shape: shape[:1]`` for per-row statistics.
    when:
        ``None`` (default): every parameter keeps this state. A function of the
        parameter's shape: only parameters for which it is true keep it; the others have
        no such entry in ``state_dict()`` and take no room in the flat state. Adafactor
        keeps factored row and column statistics for matrices and a full ``variance``
        for the others: ``State("variance", when=lambda shape: len(shape) < 2)``.
        In the update, ``layout.of(name)`` describes the slice of such a state.

    Examples
    --------
    >>> State("sum", init=0.1)
    State(name='sum', init=0.1, shape=None, when=None)
    >>> rows = State("row_var", shape=lambda s: (*s[:-1], 1),
    ...              when=lambda s: len(s) > 1)
    >>> rows.shape_for(torch.Size([4, 3]))
    torch.Size([4, 1])
    >>> print(rows.shape_for(torch.Size([3])))
    None
    """

    name: str
    init: float | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = 0.0
    shape: Shape = None
    when: Condition = None

    def fill(self, piece: torch.Tensor, param: torch.Tensor, grad: torch.Tensor) -> None:
        """Set ``piece`` (this state's flat slice for some parameters) to its initial value;
        ``param`` and ``grad`` are those parameters' flat values and gradients."""
        if not callable(self.init):
            piece.fill_(self.init)
            return
        value = self.init(param, grad)
        if not isinstance(value, torch.Tensor) or value.numel() != piece.numel():
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"State({self.name!r}, init=...) returned {got} for parameters of "
                f"{param.numel()} elements; it must return a tensor of {piece.numel()} "
                "elements (the state's flat slice), e.g. lambda param, grad: param"
            )
        piece.copy_(value.reshape(piece.shape))

    def shape_for(self, param_shape: torch.Size) -> torch.Size | None:
        """The shape of this state for a parameter of shape ``param_shape``, or ``None``
        if such a parameter does not keep it (see ``when``)."""
        if self.when is not None and not self.when(param_shape):
            return None
        if self.shape is None:
            return param_shape
        if callable(self.shape):
            return torch.Size(self.shape(param_shape))
        return torch.Size(self.shape)


def declare(names: Any, owner: str) -> tuple[State, ...]:
    """Check what ``state_names`` returned and turn every entry into a :class:`State`."""
    if isinstance(names, str) or not isinstance(names, tuple | list):
        hint = f"({names!r},)" if isinstance(names, str) else '("exp_avg", "exp_avg_sq")'
        raise TypeError(
            f"{owner}.state_names() must return a tuple of names, got "
            f"{type(names).__name__} {names!r}; write {hint} (a one-name tuple needs the comma)"
        )
    specs = tuple(State(n) if isinstance(n, str) else n for n in names)
    seen = set()
    for spec in specs:
        if not isinstance(spec, State):
            raise TypeError(
                f"{owner}.state_names(): each entry must be a str or a minioptim.State, "
                f"got {type(spec).__name__} {spec!r}"
            )
        if spec.name == "step" or spec.name in seen:
            why = "is reserved for the step count" if spec.name == "step" else "appears twice"
            raise ValueError(f"{owner}.state_names(): the name {spec.name!r} {why}")
        seen.add(spec.name)
    return specs


class StateSlices(dict):
    """The ``state`` an update receives: declared names -> flat slices.

    Reading an undeclared name raises a ``KeyError`` that lists the declared ones.
    """

    def __init__(self, slices: dict[str, torch.Tensor], owner: str) -> None:
        super().__init__(slices)
        self.owner = owner

    def __missing__(self, name: str):
        declared = ", ".join(repr(k) for k in self) or "none"
        raise KeyError(
            f"{self.owner} has no state {name!r}; declared: {declared}. "
            f"Add {name!r} to what state_names() returns to keep it."
        )
