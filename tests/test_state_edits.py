"""Edits of ``optimizer.state`` do what they do in torch.optim.

torch.optim reads ``state[p]`` at every step, so ``state.clear()``, ``del state[p]``, a
replaced entry or tensor, or a zeroed ``"step"`` change the next update (a warm restart,
ZeroRedundancyOptimizer's ``load_state_dict``). minioptim keeps its state in flat buffers;
these edits used to be ignored silently (0.08-0.24 off) and, after ``clear()``, every later
``state_dict()`` was empty. Each test applies the same edit to minioptim and to torch.optim
(``foreach=False``) mid-training and compares the trajectories and the state dicts.
"""

import collections

import pytest
import torch
from torch import nn

import minioptim

OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    "AdamW": dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
}


def halved(entry):
    return {k: v if k == "step" else v * 0.5 for k, v in entry.items()}


def zero_steps(optimizer, params):
    for p in params:
        optimizer.state[p]["step"].zero_()


def first_tensor_replaced(optimizer, params):
    entry = optimizer.state[params[0]]
    name = next(k for k in entry if k != "step")
    entry[name] = torch.ones_like(entry[name])


EDITS = {
    "clear": lambda optimizer, params: optimizer.state.clear(),
    "del one entry": lambda optimizer, params: optimizer.state.__delitem__(params[1]),
    "entry replaced": lambda optimizer, params: optimizer.state.__setitem__(
        params[0], halved(optimizer.state[params[0]])
    ),
    "tensor replaced": first_tensor_replaced,
    "tensor edited in place": lambda optimizer, params: next(
        v for k, v in optimizer.state[params[2]].items() if k != "step"
    ).mul_(3.0),
    "state reassigned": lambda optimizer, params: setattr(
        optimizer, "state", collections.defaultdict(dict)
    ),
    "pop one entry": lambda optimizer, params: optimizer.state.pop(params[3]),
    "steps zeroed": zero_steps,
}
# SGD keeps no "step" entry: there is nothing to zero
CASES = [(n, e) for n in OPTIMIZERS for e in EDITS if not (n == "SGD" and e == "steps zeroed")]


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def train(net, optimizer, steps, start=0):
    for step in range(start, start + steps):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()


def run(library, name, edit, after=3):
    net = model()
    params = list(net.parameters())
    options = OPTIMIZERS[name]
    extra = dict(impl="reference") if library is minioptim else dict(foreach=False)
    optimizer = getattr(library, name)(params, **options, **extra)
    train(net, optimizer, after)
    EDITS[edit](optimizer, params)
    train(net, optimizer, 4, start=after)
    return params, optimizer.state_dict()


@pytest.mark.parametrize("after", [1, 3], ids=["after 1 step", "after 3 steps"])
@pytest.mark.parametrize("name, edit", CASES)
def test_an_edit_of_the_state_changes_the_next_steps_as_in_torch(name, edit, after):
    """The reference path is bit-identical to torch's for-loop, so equality is exact."""
    ours, our_state = run(minioptim, name, edit, after)
    theirs, their_state = run(torch.optim, name, edit, after)
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p, q)
    assert our_state["state"].keys() == their_state["state"].keys()
    for index, entry in their_state["state"].items():
        assert our_state["state"][index].keys() == entry.keys()
        for key, value in entry.items():
            assert torch.equal(our_state["state"][index][key], value), (index, key)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_edit_matters(name):
    """The edits are not no-ops: without them, the trajectory differs (so the test above
    would catch an optimizer that ignored them)."""
    untouched, _ = run(minioptim, name, "tensor edited in place")
    for edit in EDITS:
        if (name, edit) not in CASES or edit == "tensor edited in place":
            continue
        edited, _ = run(minioptim, name, edit)
        assert not all(torch.equal(p, q) for p, q in zip(edited, untouched, strict=True)), edit


def test_after_clear_the_state_dict_is_empty_until_the_next_step_then_complete():
    net = model()
    optimizer = minioptim.Adam(net.parameters(), lr=0.01)
    train(net, optimizer, 2)
    optimizer.state.clear()
    assert optimizer.state_dict()["state"] == {}
    train(net, optimizer, 1, start=2)
    saved = optimizer.state_dict()["state"]
    assert sorted(saved) == [0, 1, 2, 3]
    assert all(float(entry["step"]) == 1.0 for entry in saved.values())


def test_an_entry_missing_a_tensor_raises_as_in_torch():
    """torch.optim's Adam raises KeyError when an entry lacks exp_avg; so does minioptim,
    with a message that says how to restart the parameter instead."""
    for library in (torch.optim, minioptim):
        net = model()
        optimizer = library.Adam(net.parameters(), lr=0.01)
        train(net, optimizer, 1)
        del optimizer.state[net[0].weight]["exp_avg"]
        with pytest.raises(KeyError, match="exp_avg"):
            train(net, optimizer, 1, start=1)


def test_reading_the_state_of_a_fresh_optimizer_changes_nothing():
    """``state[p]`` creates an empty entry, as torch.optim's defaultdict does."""
    nets = model(), model()
    ours = minioptim.Adam(nets[0].parameters(), lr=0.01, impl="reference")
    theirs = torch.optim.Adam(nets[1].parameters(), lr=0.01, foreach=False)
    for net, optimizer in zip(nets, (ours, theirs), strict=True):
        assert dict(optimizer.state[net[0].weight]) == {}
        train(net, optimizer, 3)
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(p, q)
