"""Validation of hyper-parameters, with messages that name the argument and the group."""

from __future__ import annotations

from numbers import Real
from typing import Any


def _where(group: dict[str, Any]) -> str:
    return f" (in a param group of {len(group['params'])} tensors)"


def number(group: dict[str, Any], name: str) -> float:
    value = group[name]
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{name} must be a number, got {type(value).__name__} {value!r}{_where(group)}"
        )
    return value


def non_negative(group: dict[str, Any], *names: str) -> None:
    """Each named hyper-parameter is a real number >= 0."""
    for name in names:
        value = number(group, name)
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}{_where(group)}")


def unit_interval(group: dict[str, Any], name: str, value: Any) -> None:
    """A coefficient in [0, 1), such as a beta or an EMA momentum."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}{_where(group)}")
