"""state_dict() / load_state_dict() in torch.optim's format, both ways."""

import copy
import io

import pytest
import torch
from conftest import build
from torch import nn

import minioptim

OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    "AdamW": dict(lr=0.01, betas=(0.8, 0.99)),
}


def model(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 2)).to(dtype)


def make(library, name, params):
    return build(library, name, params, **OPTIMIZERS[name])


def train(net, optimizer, steps, start=0):
    for step in range(start, start + steps):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(8, 5, generator=gen).to(net[0].weight.dtype)
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()


def save_and_load(state_dict):
    """Through a file, as users do, loading with weights_only=True (no pickled code)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(net_a, net_b, exact=False):
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        if exact:
            assert torch.equal(p, q)
        else:
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_continues_bit_identically(name):
    net = model()
    optimizer = make(minioptim, name, net.parameters())
    train(net, optimizer, 5)
    saved = save_and_load(optimizer.state_dict())
    restored_net = copy.deepcopy(net)
    restored = make(minioptim, name, restored_net.parameters())
    restored.load_state_dict(saved)
    train(net, optimizer, 5, start=5)
    train(restored_net, restored, 5, start=5)
    assert_same(net, restored_net, exact=True)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("direction", ["torch->minioptim", "minioptim->torch"])
def test_state_dict_loads_across_libraries_and_continues_as_torch(name, direction):
    source, target = (
        (torch.optim, minioptim) if direction == "torch->minioptim" else (minioptim, torch.optim)
    )
    net = model()
    optimizer = make(source, name, net.parameters())
    train(net, optimizer, 5)
    saved = save_and_load(optimizer.state_dict())

    continued = copy.deepcopy(net)  # the source library goes on
    continued_optimizer = make(source, name, continued.parameters())
    continued_optimizer.load_state_dict(save_and_load(optimizer.state_dict()))
    train(continued, continued_optimizer, 5, start=5)

    switched = copy.deepcopy(net)  # the other library takes over
    switched_optimizer = make(target, name, switched.parameters())
    switched_optimizer.load_state_dict(saved)
    train(switched, switched_optimizer, 5, start=5)
    assert_same(continued, switched)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_has_torch_format(name):
    nets = model(), model()
    ours = make(minioptim, name, nets[0].parameters())
    theirs = make(torch.optim, name, nets[1].parameters())
    for net, optimizer in zip(nets, (ours, theirs), strict=True):
        train(net, optimizer, 2)
    mine, reference = ours.state_dict(), theirs.state_dict()
    for group in reference["param_groups"]:
        group["foreach"] = None  # the reference was made with foreach=False, ours by default
    assert mine["param_groups"] == reference["param_groups"]
    assert mine["state"].keys() == reference["state"].keys()
    for index, entry in reference["state"].items():
        assert mine["state"][index].keys() == entry.keys()
        for key, value in entry.items():
            assert mine["state"][index][key].dtype == value.dtype
            assert mine["state"][index][key].shape == value.shape
            # values too (the default fast path: float64 rounding apart)
            torch.testing.assert_close(mine["state"][index][key], value, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_step_counters_have_torch_dtype_under_a_float64_default(name):
    """torch.optim keeps state['step'] in the default dtype when that is float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        nets = model(), model()
        ours = make(minioptim, name, nets[0].parameters())
        theirs = make(torch.optim, name, nets[1].parameters())
        for net, optimizer in zip(nets, (ours, theirs), strict=True):
            train(net, optimizer, 2)
        steps = ours.buckets[0][0].steps
        assert steps.dtype == torch.float64
        for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
            if "step" in theirs.state[q]:
                assert ours.state[p]["step"].dtype == theirs.state[q]["step"].dtype
    finally:
        torch.set_default_dtype(previous)


def test_adamw_loading_an_adam_state_dict_keeps_decoupled_decay_as_torch():
    """torch.optim.AdamW.__setstate__ forces decoupled_weight_decay=True on a loaded state
    dict (even one saved by Adam); minioptim.AdamW must too, and go on the same way."""
    results = []
    for library in (minioptim, torch.optim):
        net = model()
        source = build(library, "Adam", net.parameters(), lr=0.01, weight_decay=0.1)
        train(net, source, 3)
        target = build(library, "AdamW", net.parameters(), lr=0.01, weight_decay=0.1)
        target.load_state_dict(save_and_load(source.state_dict()))
        assert target.param_groups[0]["decoupled_weight_decay"] is True
        train(net, target, 3, start=3)
        results.append(net)
    assert_same(*results)


def test_loading_state_of_another_shape_with_as_many_elements_raises():
    """A checkpoint of a model whose weight is transposed (6 x 5 instead of 5 x 6)."""
    optimizer = minioptim.Adam(model().parameters(), lr=0.01)
    other = model()
    other[0].weight.data = other[0].weight.detach().t().contiguous()  # 5 x 6
    other_optimizer = minioptim.Adam(other.parameters(), lr=0.01)
    for p in other.parameters():
        p.grad = torch.ones_like(p)
    other_optimizer.step()
    with pytest.raises(ValueError, match="another model"):
        optimizer.load_state_dict(other_optimizer.state_dict())


def test_state_dict_is_a_snapshot_not_a_live_view():
    net = model()
    optimizer = minioptim.Adam(net.parameters(), lr=0.01)
    train(net, optimizer, 2)
    snapshot = optimizer.state_dict()
    exp_avg = snapshot["state"][0]["exp_avg"].clone()
    train(net, optimizer, 2, start=2)
    assert torch.equal(snapshot["state"][0]["exp_avg"], exp_avg)
    assert snapshot["state"][0]["step"].item() == 2


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_loading_casts_state_to_the_parameters_dtype_as_torch_does(name):
    source = model(torch.float64)
    optimizer = make(minioptim, name, source.parameters())
    train(source, optimizer, 3)
    saved = save_and_load(optimizer.state_dict())
    results = []
    for library in (minioptim, torch.optim):
        net = copy.deepcopy(source).float()
        target = make(library, name, net.parameters())
        target.load_state_dict(saved)
        for p in net.parameters():
            for key, value in target.state[p].items():
                if key != "step":
                    assert value.dtype == torch.float32, (library.__name__, key)
        train(net, target, 3, start=3)
        results.append(net)
    for p, q in zip(results[0].parameters(), results[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_loading_a_state_dict_of_another_model_raises():
    optimizer = minioptim.Adam(model().parameters(), lr=0.01)
    other = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)).double()
    other_optimizer = minioptim.Adam(other.parameters(), lr=0.01)
    train(other, other_optimizer, 1)
    with pytest.raises(ValueError, match="another model"):
        optimizer.load_state_dict(other_optimizer.state_dict())


def test_loading_resets_parameters_that_have_no_saved_state():
    net = model()
    optimizer = minioptim.Adam(net.parameters(), lr=0.01)
    fresh = optimizer.state_dict()  # no state yet
    train(net, optimizer, 3)
    optimizer.load_state_dict(fresh)
    assert len(optimizer.state) == 0
    reference_net = copy.deepcopy(net)
    reference = torch.optim.Adam(reference_net.parameters(), lr=0.01, foreach=False)
    train(net, optimizer, 3, start=3)  # starts again from zero moments, step 1
    train(reference_net, reference, 3, start=3)
    assert_same(net, reference_net)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_add_param_group_after_construction_matches_torch(name):
    results = []
    for library in (minioptim, torch.optim):
        net = model()
        optimizer = make(library, name, net[0].parameters())
        train(net, optimizer, 3)
        optimizer.add_param_group({"params": list(net[2].parameters()), "lr": 0.003})
        train(net, optimizer, 4, start=3)
        results.append((net, optimizer))
    (ours, ours_optimizer), (theirs, _) = results
    assert_same(ours, theirs)
    assert len(ours_optimizer.buckets) == 2
    assert ours[2].weight.grad.data_ptr() >= ours_optimizer.buckets[1][0].grad.data_ptr()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_loaded_state_is_adopted_where_a_naive_flat_buffer_ignores_it(name, monkeypatch):
    """minioptim resumes exactly; without copying loaded state into the flat buffers (a
    naive flat buffer), the resumed run diverges."""
    for naive in (False, True):
        if naive:
            monkeypatch.setattr(minioptim.flat.FlatBuffer, "adopt", lambda self, *args, **kw: None)
        net = model()
        optimizer = make(minioptim, name, net.parameters())
        train(net, optimizer, 5)
        restored_net = copy.deepcopy(net)
        restored = make(minioptim, name, restored_net.parameters())
        restored.load_state_dict(save_and_load(optimizer.state_dict()))
        train(net, optimizer, 5, start=5)
        train(restored_net, restored, 5, start=5)
        assert torch.equal(net[0].weight, restored_net[0].weight) is not naive


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_deepcopy_gives_an_independent_optimizer_that_continues_identically(name):
    net = model()
    optimizer = make(minioptim, name, net.parameters())
    train(net, optimizer, 3)
    twin = copy.deepcopy(optimizer)  # copies the parameters too, as for torch.optim
    twin_params = twin.param_groups[0]["params"]
    assert all(p is not q for p, q in zip(twin_params, net.parameters(), strict=True))
    results = []
    for opt, params in ((optimizer, list(net.parameters())), (twin, twin_params)):
        for step in range(3):
            opt.zero_grad()
            for p in params:
                p.grad.fill_(0.1 * (step + 1))
            opt.step()
        results.append([p.detach().clone() for p in params])
    assert all(torch.equal(p, q) for p, q in zip(*results, strict=True))


def test_named_parameters_are_accepted_and_named_in_the_state_dict_as_in_torch():
    nets = model(), model()
    ours = minioptim.AdamW(nets[0].named_parameters(), lr=0.01)
    theirs = torch.optim.AdamW(nets[1].named_parameters(), lr=0.01)
    for net, optimizer in zip(nets, (ours, theirs), strict=True):
        train(net, optimizer, 2)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine["param_groups"][0]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert mine["param_groups"] == reference["param_groups"]
    assert_same(*nets)
