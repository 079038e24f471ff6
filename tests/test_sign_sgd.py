"""SignSGD and Signum against a plain per-tensor implementation of their definition.

m_t = beta m_{t-1} + (1 - beta) g_t, m_0 = 0   (Signum; signSGD uses u = g)
p <- p (1 - lr wd) - lr sign(u),  sign(0) = 0,  maximize negates g
"""

import itertools

import pytest
import torch
from conftest import TOLERANCES, make_tensors
from references import PlainSignSGD

import minioptim
from minioptim.testing import assert_same_trajectory, random_gradient

# PlainSignSGD computes beta m + (1 - beta) g as written, minioptim with in-place
# operations: the same within rounding (and the fast path's tolerance covers both paths).
DEFINITION_TOLERANCES = {
    dtype: TOLERANCES["fast", dtype] for dtype in (torch.float32, torch.float64)
}


OPTIONS = [
    dict(momentum=m, weight_decay=wd, maximize=mx)
    for m, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.1], [False, True])
]


def sparse_zero_gradient(step, index, param, gen):
    """Random gradients with about a third of the entries exactly zero."""
    grad = random_gradient(step, index, param, gen)
    return torch.where(grad.abs() < 0.45, torch.zeros_like(grad), grad)


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
@pytest.mark.parametrize(
    "gradient", [random_gradient, sparse_zero_gradient], ids=["dense", "zeros"]
)
def test_sign_sgd_matches_definition(options, gradient, dtype, impl):
    assert_same_trajectory(
        lambda ps: minioptim.SignSGD(ps, lr=0.01, impl=impl, **options),
        lambda ps: PlainSignSGD(ps, lr=0.01, **options),
        make_tensors(dtype),
        steps=12,
        gradient=gradient,
        **DEFINITION_TOLERANCES[dtype],
    )


def test_zero_gradient_moves_only_by_weight_decay(impl):
    p = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    optimizer = minioptim.SignSGD([p], lr=0.1, weight_decay=0.5, impl=impl)
    p.grad = torch.tensor([0.0, 4.0, -0.0])
    optimizer.step()
    # sign(0) = 0: entries 0 and 2 only shrink by (1 - 0.1 * 0.5); entry 1 also steps by -0.1
    torch.testing.assert_close(p.detach(), torch.tensor([0.95, -2.0 * 0.95 - 0.1, 2.85]))


def test_fast_path_covers_buffers_larger_than_a_block():
    """The blocked fast path must update every element, including a partial last block."""
    size = 2 * minioptim.functional.BLOCK + 123
    tensors = [torch.randn(size, dtype=torch.float64), torch.randn(17, dtype=torch.float64)]
    assert_same_trajectory(
        lambda ps: minioptim.SignSGD(ps, lr=0.01, momentum=0.9, weight_decay=0.1, impl="fast"),
        lambda ps: PlainSignSGD(ps, lr=0.01, momentum=0.9, weight_decay=0.1),
        tensors,
        steps=3,
    )
