"""Promises every optimizer of the registry keeps, beyond following its update rule.

Each is a property torch.optim has and a drop-in must keep: ``step()`` never writes a
gradient; it bumps the version counter of every parameter it updates (and of no other);
it accepts ``model.named_parameters()``; it loads checkpoints of older torch versions,
whose param groups lack options added since; state switched on mid-training (momentum
enabled later) is kept and checkpointed; a zero gradient matrix among same-shaped ones
stays finite.
"""

import copy

import pytest
import torch
from cases import CASES
from torch import nn

import minioptim
from minioptim.testing import leaf_copies

by_id = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


def with_gradients(case, seed=0):
    params = leaf_copies(case.tensors(torch.float64))
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
    return params


@by_id
def test_step_never_writes_a_gradient(case, impl):
    """(SignSGD's maximize, say, must negate a copy, not p.grad.)"""
    for options in ({}, {"maximize": True}):
        params = with_gradients(case)
        try:
            optimizer = case.ours(params, impl, **options)
        except TypeError:  # an optimizer without this option (Muon has no maximize)
            continue
        grads = [p.grad.clone() for p in params]
        for _ in range(2):
            optimizer.step()
        for p, grad in zip(params, grads, strict=True):
            assert torch.equal(p.grad, grad)


@by_id
def test_step_bumps_the_version_of_each_updated_parameter_and_no_other(case, impl):
    """Autograd finds a step between forward and backward through these counters."""
    params = with_gradients(case)
    optimizer = case.ours(params, impl)
    params[1].grad = None  # skipped this step, as in torch.optim
    before = [p._version for p in params]
    optimizer.step()
    bumped = [p._version > v for p, v in zip(params, before, strict=True)]
    assert bumped == [i != 1 for i in range(len(params))]


@by_id
def test_named_parameters_train_as_the_plain_ones(case, impl):
    plain = with_gradients(case)
    named = leaf_copies(plain)
    for p, q in zip(named, plain, strict=True):
        p.grad = q.grad.clone()
    names = [f"p{i}" for i in range(len(named))]
    optimizers = case.ours(plain, impl), case.ours(list(zip(names, named, strict=True)), impl)
    for optimizer in optimizers:
        optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(plain, named, strict=True))
    assert optimizers[1].state_dict()["param_groups"][0]["param_names"] == names


# Options torch.optim added to the param groups over the years; a checkpoint saved
# before them has none of these keys (torch 1.x: no maximize/foreach, 2.x: no fused...).
NEWER_OPTIONS = ("maximize", "foreach", "capturable", "differentiable", "fused",
                 "decoupled_weight_decay", "nesterov", "amsgrad")  # fmt: skip


@pytest.mark.parametrize("case", [c for c in CASES if c.torch_format], ids=lambda c: c.id)
def test_a_checkpoint_without_newer_options_loads_and_continues_as_torch(case):
    """Options missing from a loaded param group take the optimizer's defaults; the run
    continues as torch's from the complete checkpoint (which torch needs for some)."""
    params = with_gradients(case)
    optimizer = case.theirs(params)
    optimizer.step()
    complete = optimizer.state_dict()
    old = copy.deepcopy(complete)
    defaults = optimizer.defaults
    for group in old["param_groups"]:
        for key in NEWER_OPTIONS:
            if key in group and group[key] == defaults.get(key):
                del group[key]
    ours, theirs = leaf_copies(params), leaf_copies(params)
    resumed = case.ours(ours, "reference"), case.theirs(theirs)
    for optimizer, state_dict, copies in zip(resumed, (old, complete), (ours, theirs), strict=True):
        optimizer.load_state_dict(state_dict)
        for p, q in zip(copies, params, strict=True):
            p.grad = q.grad.clone()
        optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("library", [minioptim, torch.optim], ids=lambda m: m.__name__)
def test_momentum_switched_on_mid_training_is_kept_and_checkpointed(library):
    """SGD without momentum keeps no state; with momentum set later, the buffer appears,
    trains as torch's and reaches state_dict() (dampening 0: torch starts the buffer at
    the gradient, minioptim at zero plus the gradient, the same)."""
    runs = []
    for lib in (library, torch.optim):
        torch.manual_seed(0)
        net = nn.Linear(3, 2).double()
        extra = dict(impl="reference") if lib is minioptim else dict(foreach=False)
        optimizer = lib.SGD(net.parameters(), lr=0.1, **extra)
        for step in range(6):
            if step == 3:
                optimizer.param_groups[0]["momentum"] = 0.9
            optimizer.zero_grad()
            net(torch.full((4, 3), 0.5 + step, dtype=torch.float64)).square().sum().backward()
            optimizer.step()
        runs.append((list(net.parameters()), optimizer.state_dict()))
    (ours, our_state), (theirs, their_state) = runs
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))
    assert sorted(our_state["state"]) == sorted(their_state["state"]) == [0, 1]
    for index, entry in their_state["state"].items():
        assert torch.equal(our_state["state"][index]["momentum_buffer"], entry["momentum_buffer"])


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_a_zero_gradient_matrix_among_same_shaped_ones_stays_finite(impl):
    """The fast path orthogonalizes same-shaped matrices as one batch; each must be
    normalized with the eps clamp, or the zero one becomes 0/0 = NaN."""
    params = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    references = leaf_copies(params)
    ours = minioptim.Muon(params, lr=0.02, impl=impl)
    theirs = torch.optim.Muon(references, lr=0.02)
    for p, q in zip(params, references, strict=True):
        p.grad = torch.zeros_like(p) if p is params[1] else torch.ones_like(p)
        q.grad = p.grad.clone()
    ours.step()
    theirs.step()
    for p, q in zip(params, references, strict=True):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
