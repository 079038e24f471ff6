"""Check an optimizer against a reference, step by step.

Used by minioptim's own tests and by the course's assignments::

    from minioptim.testing import assert_same_trajectory

    assert_same_trajectory(
        lambda params: MyMomentum(params, lr=0.1, beta=0.9),
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, foreach=False),
        [torch.randn(3, 4), torch.randn(4)],
        steps=20,
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
GradientFn = Callable[[int, int, torch.Tensor, torch.Generator], "torch.Tensor | None"]


def random_gradient(step: int, index: int, param: torch.Tensor, gen: torch.Generator):
    """Standard normal gradients, the same for every optimizer that draws them in order."""
    return torch.randn(param.shape, generator=gen, dtype=param.dtype).to(param.device)


def leaf_copies(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Independent trainable copies of ``tensors`` that keep their strides."""
    copies = []
    for t in tensors:
        copy = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
        copies.append(copy.copy_(t.detach()).requires_grad_())
    return copies


GRADIENT_MODES = ("in_place", "fresh")


def set_gradient(param: torch.Tensor, grad: torch.Tensor | None, mode: str = "in_place") -> None:
    """Give ``param`` this gradient the way backward does.

    ``"in_place"``: into the existing ``p.grad`` if it has one (backward after
    ``optimizer.zero_grad()``). ``"fresh"``: a new tensor (backward after
    ``model.zero_grad()`` or ``zero_grad(set_to_none=True)``, DDP, ``p.grad = ...``).
    """
    if grad is None:
        param.grad = None
    elif param.grad is None or mode == "fresh":
        param.grad = grad.clone()
    else:
        param.grad.copy_(grad)


def assert_same_trajectory(
    make_optimizer: OptimizerFactory,
    make_reference: OptimizerFactory,
    tensors: Sequence[torch.Tensor],
    *,
    steps: int = 10,
    seed: int = 0,
    gradient: GradientFn = random_gradient,
    compare_state: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    gradients: str = "in_place",
    tolerance: Callable[[torch.dtype], dict] | None = None,
) -> None:
    """Run two optimizers side by side from the same parameters and gradients.

    Each optimizer gets its own copies of ``tensors``. At every step both receive the same
    gradients (``gradient(step, index, param, generator)``, standard normal by default; it
    may return ``None`` to leave a parameter without a gradient), take one ``step()``, and
    then their parameters, and optionally their per-parameter state, must agree within
    ``torch.testing.assert_close(rtol=..., atol=...)`` (its dtype-based defaults if None).

    ``tolerance``, if given, maps a dtype to ``dict(rtol=..., atol=...)`` and replaces
    ``rtol``/``atol``: each parameter (and its state) is compared at its own dtype's
    tolerance, for parameters of several dtypes.

    ``gradients="in_place"`` writes each gradient into the existing ``p.grad``;
    ``gradients="fresh"`` calls ``zero_grad(set_to_none=True)`` on both optimizers and
    assigns new gradient tensors, as training frameworks that set gradients to ``None``
    (Hugging Face Trainer, accelerate) and ``model.zero_grad()`` do.

    Raises
    ------
    AssertionError
        Naming the step, the parameter and the state entry that differ.
    """
    if gradients not in GRADIENT_MODES:
        raise ValueError(f"gradients must be one of {GRADIENT_MODES}, got {gradients!r}")
    ours = leaf_copies(tensors)
    theirs = leaf_copies(tensors)
    optimizer, reference = make_optimizer(ours), make_reference(theirs)
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        if gradients == "fresh":
            optimizer.zero_grad(set_to_none=True)
            reference.zero_grad(set_to_none=True)
        for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            grad = gradient(step, index, p, gen)
            set_gradient(p, grad, gradients)
            set_gradient(q, grad, gradients)
        optimizer.step()
        reference.step()
        for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            where = f"step {step}, parameter {index} (shape {tuple(p.shape)})"
            if tolerance is not None:
                rtol, atol = tolerance(p.dtype)["rtol"], tolerance(p.dtype)["atol"]
            _close(p, q, where, rtol, atol)
            if compare_state:
                ours_state, their_state = optimizer.state.get(p, {}), reference.state.get(q, {})
                _compare_state(ours_state, their_state, where, rtol, atol)


def _compare_state(ours: dict, theirs: dict, where: str, rtol, atol) -> None:
    ours = {k: v for k, v in ours.items() if v is not None}
    theirs = {k: v for k, v in theirs.items() if v is not None}
    if ours.keys() != theirs.keys():
        raise AssertionError(f"{where}: state keys {sorted(ours)} != reference {sorted(theirs)}")
    for key, value in ours.items():
        _close(value, theirs[key], f"{where}, state[{key!r}]", rtol, atol, exact=key == "step")


def _close(actual, expected, where, rtol, atol, exact=False) -> None:
    try:
        if exact:
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)
        else:
            torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    except AssertionError as error:
        raise AssertionError(f"{where}: {error}") from None
