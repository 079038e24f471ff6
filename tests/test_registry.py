"""Every optimizer of the registry (cases.py) against its independent reference.

Each test runs minioptim and the reference side by side on the same parameters and
gradients for many steps and compares parameters and state after every step, with the
case's measured tolerance (bit-identical where the paths repeat the same operations).
"""

import io

import pytest
import torch
from cases import CASES, EXACT
from conftest import TOLERANCES

from minioptim.testing import assert_same_trajectory, leaf_copies, random_gradient

STEPS = 12
by_id = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


@by_id
@pytest.mark.parametrize("gradients", ["in_place", "fresh"])
def test_matches_reference(case, impl, dtype, gradients):
    """``fresh`` sets gradients to None and assigns new tensors each step, as HF Trainer,
    accelerate and ``model.zero_grad()`` do: the optimizer must copy them in and re-bind."""
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl),
        case.theirs,
        case.tensors(dtype),
        steps=STEPS,
        gradients=gradients,
        **case.tolerance(impl, dtype),
    )


def with_scheduler(optimizer):
    """Two param groups (the second at a tenth of the learning rate) and an LR schedule
    stepped after every optimizer step, as training loops do."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.8**epoch)
    original = optimizer.step

    def step():
        original()
        scheduler.step()

    optimizer.step = step
    return optimizer


def two_groups(params, lr):
    return [dict(params=params[:2]), dict(params=params[2:], lr=lr / 10)]


@by_id
@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_param_groups_and_a_scheduler(case, impl):
    lr = case.options["lr"]
    assert_same_trajectory(
        lambda ps: with_scheduler(case.ours(two_groups(ps, lr), impl)),
        lambda ps: with_scheduler(case.theirs(two_groups(ps, lr))),
        case.tensors(torch.float64),
        steps=STEPS,
        **case.tolerance(impl, torch.float64),
    )


def skipping_gradient(step, index, param, gen):
    """Parameter 0 gets no gradient on steps 1-3 and parameter 1 none on odd steps, so
    the parameters' step counts differ when the checkpoint is taken."""
    grad = random_gradient(step, index, param, gen)
    if (index == 0 and step <= 3) or (index == 1 and step % 2 == 1):
        return None
    return grad


def run(optimizer, params, steps, start, seed=0):
    gen = torch.Generator().manual_seed(seed + start)
    for step in range(start, start + steps):
        for index, p in enumerate(params):
            p.grad = skipping_gradient(step, index, p, gen)
        optimizer.step()


def through_a_file(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_state_equal(ours, theirs, params_ours, params_theirs, tolerance):
    for p, q in zip(params_ours, params_theirs, strict=True):
        mine = {k: v for k, v in ours.state.get(p, {}).items() if v is not None}
        reference = {k: v for k, v in theirs.state.get(q, {}).items() if v is not None}
        assert mine.keys() == reference.keys()
        for key, value in reference.items():
            exact = EXACT if key == "step" else tolerance
            torch.testing.assert_close(mine[key], value, **exact, msg=f"state[{key!r}]")


@by_id
def test_checkpoint_with_unequal_step_counts_resumes_like_the_reference(case, impl):
    """Save after parameters skipped different numbers of steps, load into a fresh
    optimizer, go on: state (step included) and parameters must follow the reference."""
    tensors = case.tensors(torch.float64)
    tolerance = case.tolerance(impl, torch.float64)
    ours_params, their_params = leaf_copies(tensors), leaf_copies(tensors)
    ours, theirs = case.ours(ours_params, impl), case.theirs(their_params)
    run(ours, ours_params, 6, start=1)
    run(theirs, their_params, 6, start=1)
    sources = {"ours": ours.state_dict()}
    if case.torch_format:
        sources["torch.optim"] = theirs.state_dict()
    for source, saved in sources.items():
        restored_params = [p.detach().clone().requires_grad_() for p in ours_params]
        restored = case.ours(restored_params, impl)
        restored.load_state_dict(through_a_file(saved))
        assert_state_equal(restored, theirs, restored_params, their_params, tolerance)
        continued = leaf_copies(their_params)
        reference = case.theirs(continued)
        reference.load_state_dict(theirs.state_dict())
        run(restored, restored_params, 6, start=7)
        run(reference, continued, 6, start=7)
        for p, q in zip(restored_params, continued, strict=True):
            torch.testing.assert_close(p, q, **tolerance, msg=f"resumed from {source}")
    if case.torch_format:  # and torch.optim resumes from ours
        reference = case.theirs(leaf_copies(their_params))
        reference.load_state_dict(through_a_file(ours.state_dict()))
        assert_state_equal(
            ours, reference, ours_params, reference.param_groups[0]["params"], tolerance
        )


@by_id
def test_a_one_element_tensor_lr_works_as_in_torch(case, impl):
    lr = torch.tensor([case.options["lr"]])
    # torch.optim takes the tensor; the per-tensor definitions take its value as a number
    their_lr = lr if case.torch_format else lr.item()
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl, lr=lr),
        lambda ps: case.theirs(ps, lr=their_lr),
        case.tensors(torch.float32),
        steps=STEPS,
        **case.tolerance(impl, torch.float32),
    )
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        case.ours(leaf_copies(case.tensors(torch.float32)), impl, lr=torch.tensor([0.1, 0.2]))


def test_the_registry_covers_every_optimizer():
    import minioptim

    names = {c.name for c in CASES}
    assert names == {"SGD", "Adam", "AdamW", "SignSGD", "Lion", "Muon"}
    assert all(hasattr(minioptim, name) for name in names)
    assert TOLERANCES  # the fast tolerances come from conftest
