"""State declarations of the extension API: names, shapes, initial values.

``state_names`` returns names or :class:`minioptim.State` specs; the bucket keeps each
as one flat tensor in the declared shape per parameter. Here: a state whose shape is a
function of the parameter's shape (per-row statistics) against a per-tensor loop, and
the declarations that must be refused.
"""

import pytest
import torch
from cases import matrices

from minioptim import FusedOptimizer, State
from minioptim.testing import assert_same_trajectory, leaf_copies


def row_sums(g: torch.Tensor) -> torch.Tensor:
    return g.pow(2).sum(dim=tuple(range(1, g.dim())))


class RowScaled(FusedOptimizer):
    """p <- p - lr g / sqrt(r + eps), r the running sum of each row's squared gradient
    (an Adafactor-like per-row statistic): state of shape ``shape[:1]``."""

    def __init__(self, params, lr=0.1, eps=1e-8):
        super().__init__(params, dict(lr=lr, eps=eps))

    def state_names(self, group):
        return (State("rows", init=0.5, shape=lambda shape: shape[:1]),)

    def update(self, group, param, grad, state, step, layout):
        rows = layout.views(state["rows"], [shape[:1] for shape in layout.shapes])
        for p, g, r in zip(layout.views(param), layout.views(grad), rows, strict=True):
            r.add_(row_sums(g))
            p.sub_(group["lr"] * g / (r.sqrt() + group["eps"]).view(-1, *[1] * (g.dim() - 1)))


class PlainRowScaled(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, eps=1e-8):
        super().__init__(params, dict(lr=lr, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if "rows" not in state:
                    state["rows"] = torch.full(p.shape[:1], 0.5, dtype=p.dtype)
                state["rows"].add_(row_sums(p.grad))
                denominator = (state["rows"].sqrt() + group["eps"]).view(-1, *[1] * (p.dim() - 1))
                p.sub_(group["lr"] * p.grad / denominator)


def test_a_state_shaped_by_a_function_of_the_parameter_shape_matches_a_loop():
    assert_same_trajectory(
        RowScaled,
        PlainRowScaled,
        matrices(torch.float64),
        steps=10,
        compare_state=False,  # ours adds state["step"]; the rows are compared below
        rtol=0,
        atol=0,
    )
    params = leaf_copies(matrices(torch.float64))
    optimizer = RowScaled(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    for p in params:
        rows = optimizer.state[p]["rows"]
        assert rows.shape == p.shape[:1]
        torch.testing.assert_close(rows, torch.full(p.shape[:1], 0.5 + p.shape[1]).double())


def with_state(*names):
    class Declares(FusedOptimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

        def state_names(self, group):
            return names

        def update(self, group, param, grad, state, step):
            param.add_(grad, alpha=-group["lr"])

    return Declares


@pytest.mark.parametrize(
    "names, message",
    [
        (("step",), "reserved for the step count"),
        ((State("step"),), "reserved for the step count"),
        (("velocity", "velocity"), "appears twice"),
        (("velocity", State("velocity", init=1.0)), "appears twice"),
    ],
    ids=["step", "State-step", "twice", "twice-as-State"],
)
def test_reserved_and_repeated_state_names_are_refused(names, message):
    p = torch.ones(3, requires_grad=True)
    optimizer = with_state(*names)([p])
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=message):
        optimizer.step()
