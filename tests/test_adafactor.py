"""minioptim.Adafactor against torch.optim.Adafactor: trajectories, state, checkpoints.

Adafactor keeps a state that depends on the parameter's shape (factored row and column
statistics for tensors of 2 or more dimensions, a full variance for the others), so these
tests also cover ``State(when=...)`` and ``Layout.of``.
"""

import copy
import warnings

import pytest
import torch
from conftest import make_tensors

import minioptim
from minioptim.testing import assert_same_trajectory, leaf_copies

# float32: per-shape batched reductions and layout.rms add in another order than torch's
# per-tensor norms; 25 steps stay within these (measured worst: about 2e-6 relative)
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}
SETTINGS = [
    {},
    dict(lr=0.05, weight_decay=0.1, d=1.5),
    dict(eps=(1e-3, 1e-2), beta2_decay=-0.5, maximize=True),
]


def model_tensors(dtype):
    """make_tensors' 0-d, 1-d, 2-d, 4-d and transposed tensors, plus two matrices of one
    shape (one batch of the per-shape update) and a 3-d tensor."""
    gen = torch.Generator().manual_seed(1)
    extra = [torch.randn(*s, generator=gen, dtype=dtype) for s in [(5, 3), (4, 2, 6)]]
    return make_tensors(dtype) + extra


# impl="compiled" traces the loop over shapes into one graph per bucket layout: about a
# minute of compilation on a 2-core CPU, so one case (float64, default settings)
CASES = [
    (dtype, settings, "auto") for dtype in (torch.float32, torch.float64) for settings in SETTINGS
]
CASES.append((torch.float64, SETTINGS[0], "compiled"))


@pytest.mark.parametrize("dtype, settings, impl", CASES)
def test_adafactor_follows_torch(dtype, settings, impl):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # compiled: a fallback to eager warns
        assert_same_trajectory(
            lambda ps: minioptim.Adafactor(ps, impl=impl, **settings),
            lambda ps: torch.optim.Adafactor(ps, foreach=False, **settings),
            model_tensors(dtype),
            steps=25,
            **TOLERANCE[dtype],
        )


def test_adafactor_state_has_torch_names_and_shapes_per_parameter():
    tensors = model_tensors(torch.float32)
    ours, theirs = leaf_copies(tensors), leaf_copies(tensors)
    optimizers = minioptim.Adafactor(ours), torch.optim.Adafactor(theirs)
    for params, optimizer in zip((ours, theirs), optimizers, strict=True):
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
    for p, q in zip(ours, theirs, strict=True):
        mine, torchs = optimizers[0].state[p], optimizers[1].state[q]
        assert sorted(mine) == sorted(torchs)
        for key in torchs:
            assert mine[key].shape == torchs[key].shape, (p.shape, key)


def test_parameters_skipping_steps_keep_their_own_count():
    def sometimes(step, index, param, generator):
        if index in (1, 2) and step % 3 == 0:
            return None
        return torch.randn(param.shape, generator=generator, dtype=param.dtype)

    assert_same_trajectory(
        lambda ps: minioptim.Adafactor(ps, lr=0.05),
        lambda ps: torch.optim.Adafactor(ps, lr=0.05, foreach=False),
        model_tensors(torch.float64),
        steps=12,
        gradient=sometimes,
        **TOLERANCE[torch.float64],
    )


@pytest.mark.parametrize("direction", ["torch->minioptim", "minioptim->torch"])
def test_checkpoints_load_both_ways_and_resume_on_the_same_path(direction):
    tensors = model_tensors(torch.float64)
    gen = torch.Generator().manual_seed(3)
    grads = [
        [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in tensors] for _ in range(8)
    ]
    classes = {"torch": lambda ps: torch.optim.Adafactor(ps, lr=0.05, foreach=False),
               "minioptim": lambda ps: minioptim.Adafactor(ps, lr=0.05)}  # fmt: skip
    first, second = direction.split("->")

    def run(make, params, steps, optimizer=None):
        optimizer = optimizer or make(params)
        for step_grads in steps:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        return optimizer

    straight = leaf_copies(tensors)
    run(classes[second], straight, grads)
    resumed = leaf_copies(tensors)
    saved = copy.deepcopy(run(classes[first], resumed, grads[:4]).state_dict())
    optimizer = classes[second](resumed)
    optimizer.load_state_dict(saved)
    run(classes[second], resumed, grads[4:], optimizer)
    for p, q in zip(resumed, straight, strict=True):
        torch.testing.assert_close(p, q, **TOLERANCE[torch.float64])


def test_layout_of_a_state_batches_it_like_the_parameters():
    params = leaf_copies(model_tensors(torch.float32))
    optimizer = minioptim.Adafactor(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    bucket = optimizer.buckets[0][0]
    layout = bucket.layout()
    rows = layout.of("row_var")
    flat = bucket.state["row_var"]
    batches = rows.by_shape(flat)
    assert [len(indices) for _, indices, _ in batches] == [
        len(indices) for shape, indices, _ in layout.by_shape(bucket.param) if len(shape) > 1
    ]
    for shape, indices, batch in batches:
        for k, i in enumerate(indices):
            assert batch[k].data_ptr() == optimizer.state[layout.params[i]]["row_var"].data_ptr()
            assert batch[k].shape == shape
    assert sum(view is None for view in rows.views(flat)) == sum(p.dim() < 2 for p in params)


def test_layout_of_an_undeclared_state_names_the_kept_ones():
    params = leaf_copies(model_tensors(torch.float32))
    optimizer = minioptim.Adafactor(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    with pytest.raises(KeyError, match="'row_var', 'col_var', 'variance'"):
        optimizer.buckets[0][0].layout().of("exp_avg")


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(lr=-1.0), "lr"),
        (dict(beta2_decay=0.5), "beta2_decay"),
        (dict(eps=(-1.0, 1e-3)), r"eps\[0\]"),
        (dict(eps=(None, -1.0)), r"eps\[1\]"),
        (dict(d=0.5), "clipping threshold"),
        (dict(weight_decay=-0.1), "weight_decay"),
    ],
)
def test_invalid_settings_raise_like_torch(bad, message):
    with pytest.raises(ValueError, match=message):
        minioptim.Adafactor([torch.zeros(3, requires_grad=True)], **bad)
    with pytest.raises(ValueError):
        torch.optim.Adafactor([torch.zeros(3, requires_grad=True)], **bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_within_an_ulp_or_two_of_torch(dtype):
    """Measured after 12 steps: bfloat16 1 eps, float16 0.5 eps (absolute, values near 1)."""
    tensors = [t.to(dtype) for t in model_tensors(torch.float32)]
    eps = torch.finfo(dtype).eps
    assert_same_trajectory(
        lambda ps: minioptim.Adafactor(ps, lr=0.05),
        lambda ps: torch.optim.Adafactor(ps, lr=0.05, foreach=False),
        tensors,
        steps=12,
        rtol=eps,
        atol=2 * eps,
    )


def test_matrices_of_different_shapes_with_equal_row_factors_are_batched_apart():
    """(5, 3) and (5, 7) both keep a (5, 1) row factor: the state's batches must follow
    the parameters' shapes, not the state's, or the column factors would not line up."""
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in [(5, 3), (5, 7), (3,)]]
    assert_same_trajectory(
        lambda ps: minioptim.Adafactor(ps, lr=0.05),
        lambda ps: torch.optim.Adafactor(ps, lr=0.05, foreach=False),
        tensors,
        steps=8,
        **TOLERANCE[torch.float64],
    )


def test_a_states_by_shape_follows_the_parameters_shapes():
    """Row factors of (5, 3) and (5, 7) matrices have one shape, (5, 1), but belong to
    parameters of two shapes: two batches, each lined up with its parameters'."""
    params = [torch.randn(5, 3, requires_grad=True), torch.randn(5, 7, requires_grad=True)]
    optimizer = minioptim.Adafactor(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    bucket = optimizer.buckets[0][0]
    batches = bucket.layout().of("row_var").by_shape(bucket.state["row_var"])
    assert [(tuple(shape), indices) for shape, indices, _ in batches] == [
        ((5, 1), range(0, 1)),
        ((5, 1), range(1, 2)),
    ]
