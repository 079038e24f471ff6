"""minioptim gives the same numbers as torch.optim (foreach=False, the ground truth).

Every test runs both optimizers side by side for 12 steps on a 0-d, 1-d, 2-d, 4-d and a
non-contiguous parameter with identical random gradients, and compares parameters and
state after every step (tolerances in conftest.TOLERANCES). Half precision, per optimizer
with measured tolerances, is in test_registry.py.
"""

import itertools

import pytest
import torch
from cases import CASES
from conftest import TOLERANCES, make_tensors

import minioptim
from minioptim.testing import assert_same_trajectory

STEPS = 12

SGD_OPTIONS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 0.05], [False, True]
    )
    if not n or (m > 0 and d == 0)  # torch accepts nesterov only with momentum, no dampening
]

ADAM_OPTIONS = [
    dict(amsgrad=a, weight_decay=wd, maximize=mx, betas=b)
    for a, wd, mx, b in itertools.product(
        [False, True], [0.0, 0.1], [False, True], [(0.9, 0.999), (0.8, 0.95)]
    )
]


def option_id(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=option_id)
def test_sgd_matches_torch(options, dtype, impl):
    assert_same_trajectory(
        lambda ps: minioptim.SGD(ps, lr=0.05, impl=impl, **options),
        lambda ps: torch.optim.SGD(ps, lr=0.05, foreach=False, **options),
        make_tensors(dtype),
        steps=STEPS,
        **TOLERANCES[impl, dtype],
    )


@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=option_id)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_matches_torch(name, options, dtype, impl):
    assert_same_trajectory(
        lambda ps: getattr(minioptim, name)(ps, lr=0.01, impl=impl, **options),
        lambda ps: getattr(torch.optim, name)(ps, lr=0.01, foreach=False, **options),
        make_tensors(dtype),
        steps=STEPS,
        **TOLERANCES[impl, dtype],
    )


def test_adamw_default_weight_decay_matches_torch(dtype, impl):
    assert minioptim.AdamW([torch.zeros(1)]).defaults["weight_decay"] == 1e-2
    assert_same_trajectory(
        lambda ps: minioptim.AdamW(ps, lr=0.01, impl=impl),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, foreach=False),
        make_tensors(dtype),
        steps=STEPS,
        **TOLERANCES[impl, dtype],
    )


def grouped(params, name):
    """Three param groups with different hyper-parameters."""
    groups = {
        "SGD": [dict(lr=0.1, momentum=0.5), dict(lr=0.01, nesterov=True), dict(weight_decay=0.1)],
        "Adam": [dict(lr=0.1, betas=(0.5, 0.9)), dict(lr=0.001, amsgrad=True), dict(eps=1e-3)],
        "AdamW": [dict(weight_decay=0.3), dict(lr=0.05, maximize=True), dict(amsgrad=True)],
    }[name]
    split = [params[:1], params[1:3], params[3:]]
    return [dict(params=ps, **options) for ps, options in zip(split, groups, strict=True)]


@pytest.mark.parametrize(
    "name, defaults",
    [("SGD", dict(lr=0.02, momentum=0.9)), ("Adam", dict(lr=0.01)), ("AdamW", dict(lr=0.01))],
)
def test_param_groups_match_torch(name, defaults, dtype, impl):
    assert_same_trajectory(
        lambda ps: getattr(minioptim, name)(grouped(ps, name), impl=impl, **defaults),
        lambda ps: getattr(torch.optim, name)(grouped(ps, name), foreach=False, **defaults),
        make_tensors(dtype),
        steps=STEPS,
        **TOLERANCES[impl, dtype],
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_mixed_dtypes_get_one_bucket_each_and_keep_their_dtype(case, impl):
    """float32 and float64 parameters in one group: two buckets, each compared with the
    reference at its own dtype's tolerance."""
    tensors = case.tensors(torch.float32)[:3] + case.tensors(torch.float64, seed=1)[:3]
    optimizer = case.ours([t.clone().requires_grad_() for t in tensors], impl)
    assert [b.dtype for b in optimizer.buckets[0]] == [torch.float32, torch.float64]
    for p, t in zip(optimizer.param_groups[0]["params"], tensors, strict=True):
        assert p.dtype == t.dtype
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl),
        case.theirs,
        tensors,
        tolerance=lambda dtype: case.tolerance(impl, dtype),
        steps=STEPS,
    )


@pytest.mark.parametrize(
    "name, options",
    [
        ("SGD", dict(lr=0.1)),
        ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
        ("Adam", dict(lr=0.1, weight_decay=0.1)),
        ("AdamW", dict(lr=0.1, amsgrad=True)),
    ],
)
def test_reference_and_fast_paths_agree(name, options, dtype):
    assert_same_trajectory(
        lambda ps: getattr(minioptim, name)(ps, impl="fast", **options),
        lambda ps: getattr(minioptim, name)(ps, impl="reference", **options),
        make_tensors(dtype),
        steps=30,
        **TOLERANCES["fast", dtype],
    )


def test_hyperparameters_are_read_at_every_step():
    """Changing param_groups between steps (as schedulers do) changes the next update."""

    def schedule(optimizer):
        original = optimizer.step

        def step():
            group = optimizer.param_groups[0]
            group["lr"] *= 0.7
            group["betas"] = (group["betas"][0] * 0.99, group["betas"][1])
            return original()

        optimizer.step = step
        return optimizer

    assert_same_trajectory(
        lambda ps: schedule(minioptim.Adam(ps, lr=0.1)),
        lambda ps: schedule(torch.optim.Adam(ps, lr=0.1, foreach=False)),
        make_tensors(torch.float64),
        steps=STEPS,
        **TOLERANCES["fast", torch.float64],
    )
