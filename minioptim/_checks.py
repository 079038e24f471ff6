"""Validation of hyper-parameters, with messages that name the argument and the group."""

from __future__ import annotations

from numbers import Real
from typing import Any

import torch


def _where(group: dict[str, Any]) -> str:
    return f" (in a param group of {len(group['params'])} tensors)"


def number(group: dict[str, Any], name: str, value: Any = None) -> Any:
    """A real number, or a 1-element tensor as torch.optim accepts for ``lr`` and betas."""
    value = group[name] if value is None else value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(
                f"Tensor {name} must be 1-element and floating point, got shape "
                f"{tuple(value.shape)} and dtype {value.dtype}{_where(group)}"
            )
        return value
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
    try:
        value = number(group, name, value)
    except TypeError:
        value = None
    if value is None or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}{_where(group)}")


def betas(group: dict[str, Any]) -> None:
    """``group["betas"]`` is a pair of coefficients in [0, 1)."""
    pair = group["betas"]
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {pair!r}{_where(group)}")
    for index, beta in enumerate(pair):
        unit_interval(group, f"betas[{index}]", beta)
