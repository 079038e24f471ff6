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
    """``group["betas"]`` is a pair of coefficients in [0, 1): two numbers or two tensors."""
    pair = group["betas"]
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {pair!r}{_where(group)}")
    for index, beta in enumerate(pair):
        unit_interval(group, f"betas[{index}]", beta)
    # As torch.optim.Adam: a tensor beta and a number do not mix.
    if isinstance(pair[0], torch.Tensor) != isinstance(pair[1], torch.Tensor):
        raise ValueError(
            f"betas must be either both numbers or both tensors, got {pair!r}{_where(group)}; "
            "pass two floats, e.g. betas=(0.9, 0.999), or two 1-element tensors"
        )


def no_tensor_with_foreach(group: dict[str, Any], owner: str) -> None:
    """A tensor ``lr`` or beta is refused with ``foreach=True``, as ``torch.optim.<owner>``
    refuses it (without ``capturable=True``, which minioptim does not support)."""
    if not group.get("foreach"):
        return
    named = [("lr", group["lr"])] + [
        (f"betas[{index}]", beta) for index, beta in enumerate(group.get("betas", ()))
    ]
    for name, value in named:
        if isinstance(value, torch.Tensor):
            raise ValueError(
                f"{name} as a Tensor is not supported with foreach=True, as in "
                f"torch.optim.{owner}{_where(group)}. minioptim ignores foreach (every update "
                f"is fused): drop foreach=True, or pass {name} as a float"
            )


def fused_or_foreach(group: dict[str, Any]) -> None:
    """``fused=True`` and ``foreach=True`` together raise, as in torch.optim (RuntimeError)."""
    if group.get("fused") and group.get("foreach"):
        raise RuntimeError(
            "`fused` and `foreach` cannot be `True` together (as in torch.optim); minioptim "
            f"ignores both, every update being fused: pass at most one{_where(group)}"
        )
