"""What every check runs on: the starting tensors, the gradients, the tolerance, and
two optimizers side by side (:func:`trace`)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch

from ..testing import leaf_copies, random_gradient, set_gradient

STEPS = 30
RTOL = 1e-9
ATOL = 1e-12
SEED = 0
SHAPES = ((4, 3), (3,), (2, 2, 3))
LATE = 1  # in the "late" variant, parameter 1 gets no gradient ...
LATE_STEPS = 4  # ... for its first 4 steps: its first update is at step 5
CHECKPOINT_STEPS = 10  # a checkpoint is saved after 10 steps
LARGE = 0  # in the "large" variant, parameter 0 starts 100 times larger: ...
LARGE_FACTOR = 100.0  # ... LAMB's trust ratio ||p|| / ||r|| is then far above 10

Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def make_tensors(copies: int = 1, large: bool = False) -> list[torch.Tensor]:
    """The parameters every check starts from: float64, seeded, shapes ``SHAPES``.

    The (3,) tensor is zero, like a freshly initialised bias (LAMB's trust ratio needs
    its special case there). ``copies`` repeats the shapes, for the count of operations.
    ``large`` multiplies parameter LARGE by LARGE_FACTOR.
    """
    generator = torch.Generator().manual_seed(1234)
    tensors = []
    for _ in range(copies):
        for shape in SHAPES:
            tensor = torch.randn(shape, generator=generator, dtype=torch.float64)
            tensors.append(tensor.zero_() if shape == (3,) else tensor)
    if large:
        tensors[LARGE] *= LARGE_FACTOR
    return tensors


def late_gradient(step: int, index: int, param: torch.Tensor, gen: torch.Generator):
    """Standard normal gradients, but none for parameter LATE during its first steps."""
    grad = random_gradient(step, index, param, gen)
    return None if index == LATE and step <= LATE_STEPS else grad


def zero_first_gradient(step: int, index: int, param: torch.Tensor, gen: torch.Generator):
    """Standard normal gradients, but 0 at step 1 (a layer that gets no signal yet): a
    momentum buffer that is still 0 after a step is then no sign of the first step."""
    grad = random_gradient(step, index, param, gen)
    return grad.zero_() if step == 1 else grad


GRADIENTS = {"late": late_gradient, "zero": zero_first_gradient}


def train(make: Factory, tensors: list[torch.Tensor], steps: int):
    """Train ``steps`` steps on copies of ``tensors``; return the params and state_dict."""
    params = leaf_copies(tensors)
    optimizer = make(params)
    gen = torch.Generator().manual_seed(SEED)
    for step in range(1, steps + 1):
        for index, p in enumerate(params):
            set_gradient(p, random_gradient(step, index, p, gen))
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer.state_dict()


def loaded(make: Factory, saved: dict) -> Factory:
    def factory(params):
        optimizer = make(params)
        optimizer.load_state_dict(copy.deepcopy(saved))
        return optimizer

    return factory


def trace(
    make_optimizer: Factory,
    make_reference: Factory,
    tensors: Iterable[torch.Tensor],
    *,
    steps: int = STEPS,
    gradient=random_gradient,
    seed: int = SEED + 1,
) -> list[dict[str, tuple[float, bool]]]:
    """Run two optimizers side by side, as ``assert_same_trajectory``, and record all.

    Returns one dict per step: entry (``"param"`` or a state name) -> (greatest absolute
    difference over the parameters, whether it is beyond ``rtol=RTOL, atol=ATOL``). An
    entry that only one of them keeps, or keeps in another shape, counts as ``inf``.
    """
    tensors = list(tensors)
    ours, theirs = leaf_copies(tensors), leaf_copies(tensors)
    optimizer, reference = make_optimizer(ours), make_reference(theirs)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(1, steps + 1):
        for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            grad = gradient(step, index, p, gen)
            set_gradient(p, grad)
            set_gradient(q, grad)
        optimizer.step()
        reference.step()
        row: dict[str, tuple[float, bool]] = {}
        for p, q in zip(ours, theirs, strict=True):
            pairs = [("param", p.detach(), q.detach())]
            mine, their = optimizer.state.get(p, {}), reference.state.get(q, {})
            for name in sorted(set(mine) | set(their)):
                pairs.append((name, mine.get(name), their.get(name)))
            for name, a, b in pairs:
                size, differs = _difference(a, b, exact=name == "step")
                old_size, old_differs = row.get(name, (0.0, False))
                row[name] = (max(size, old_size), differs or old_differs)
        rows.append(row)
    return rows


def _difference(a, b, exact: bool) -> tuple[float, bool]:
    if a is None and b is None:
        return 0.0, False
    if a is None or b is None or a.shape != b.shape:
        return math.inf, True
    a, b = a.detach().double(), b.detach().double()
    size = (a - b).abs().max().item() if a.numel() else 0.0
    if exact:
        return size, size != 0
    return size, not torch.allclose(a, b, rtol=RTOL, atol=ATOL)
