"""Real training code breaks flat-buffer views; minioptim notices and repairs them.

Each scenario trains the same model with minioptim and with its reference (every
optimizer of the registry, cases.py) and compares the parameters. Each scenario that
breaks the views also runs with a *naive* flat-buffer optimizer (minioptim with the
binding check switched off, as in the design minioptim grew from), in the same test as
minioptim itself, to show that the scenario really breaks them: there the model silently
stops training or trains the wrong values, and the comparison fails.
"""

import pytest
import torch
from cases import CASES
from torch import nn

import minioptim
from minioptim.flat import FlatBuffer

STEPS = 8
by_id = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


class TwoBranch(nn.Module):
    """A trunk and two heads; head `b` is only used when asked, so it may get no gradient."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(4, 8)
        self.a = nn.Linear(8, 1)
        self.b = nn.Linear(8, 1)
        self.double()

    def forward(self, x, use_b=True):
        hidden = torch.tanh(self.trunk(x))
        return self.a(hidden) + self.b(hidden) if use_b else self.a(hidden)


def data(step):
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    return x, x.sum(dim=1, keepdim=True).sin()


def loss_of(model, step, use_b=True):
    x, y = data(step)
    return nn.functional.mse_loss(model(x, use_b), y)


# -- the scenarios: one training step each, written as users write them ---------------------


def model_zero_grad(model, optimizer, step):
    """model.zero_grad() sets every p.grad to None; backward allocates new gradients."""
    model.zero_grad()
    loss_of(model, step).backward()
    optimizer.step()


def optimizer_zero_grad_set_to_none(model, optimizer, step):
    optimizer.zero_grad(set_to_none=True)
    loss_of(model, step).backward()
    optimizer.step()


def set_to_none_unused_head(model, optimizer, step):
    """zero_grad(set_to_none=True), then head b unused on two steps out of three: it has
    no gradient, so it is skipped (no weight decay, no momentum), as in torch.optim."""
    optimizer.zero_grad(set_to_none=True)
    loss_of(model, step, use_b=step % 3 == 0).backward()
    optimizer.step()


def unused_head(model, optimizer, step):
    """Head b has no gradient on two steps out of three: torch.optim skips it, state and all."""
    model.zero_grad()
    loss_of(model, step, use_b=step % 3 == 0).backward()
    optimizer.step()


def assigned_gradients(model, optimizer, step):
    """Gradients computed with autograd.grad and assigned to p.grad by hand."""
    params = list(model.parameters())
    grads = torch.autograd.grad(loss_of(model, step), params)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()


def replaced_data(model, optimizer, step):
    """p.data replaced by a new tensor of the same shape: the new values must win."""
    if step == 3:
        model.a.weight.data = model.a.weight.detach() * 0.5
    optimizer.zero_grad()
    loss_of(model, step).backward()
    optimizer.step()


def loaded_weights(model, optimizer, step):
    """model.load_state_dict (copying into the existing parameters) mid-training."""
    if step == 3:
        model.load_state_dict({k: v * 0.9 for k, v in model.state_dict().items()})
    optimizer.zero_grad()
    loss_of(model, step).backward()
    optimizer.step()


SCENARIOS = [
    model_zero_grad,
    optimizer_zero_grad_set_to_none,
    set_to_none_unused_head,
    unused_head,
    assigned_gradients,
    replaced_data,
    loaded_weights,
]
# Scenarios a naive flat buffer survives: loading weights copies into the views.
HARMLESS_FOR_NAIVE = (loaded_weights,)


def train(make, scenario, case):
    """Train a fresh model with ``make(params)`` on the parameters the case takes."""
    model = TwoBranch()
    optimizer = make(case.selects(model.parameters()))
    for step in range(1, STEPS + 1):
        scenario(model, optimizer, step)
    return model


def naive_check_bindings(self, owner):
    """minioptim without the binding check: views are assumed, never verified."""
    return [True] * len(self)


def tolerance(case):
    return case.tolerance("fast", torch.float64)  # float64 models, the default path


def same_parameters(ours, theirs, case) -> bool:
    return all(
        torch.allclose(p, q, **tolerance(case))
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True)
    )


def assert_same_models(ours, theirs, case):
    for (key, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, **tolerance(case), msg=lambda m, k=key: f"{k}: {m}")


@by_id
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_matches_torch_where_a_naive_flat_buffer_breaks(scenario, case, monkeypatch):
    theirs = train(case.theirs, scenario, case)
    ours = train(case.ours, scenario, case)
    assert_same_models(ours, theirs, case)
    assert not same_parameters(ours, TwoBranch(), case), "the model must have trained"
    if scenario not in HARMLESS_FOR_NAIVE:
        monkeypatch.setattr(FlatBuffer, "check_bindings", naive_check_bindings)
        naive = train(case.ours, scenario, case)
        assert not same_parameters(naive, theirs, case), "the scenario must break naive views"


def test_unused_parameters_keep_their_state_and_step_count():
    model = TwoBranch()
    optimizer = minioptim.Adam(model.parameters(), lr=0.01)
    for step in range(1, STEPS + 1):
        unused_head(model, optimizer, step)
    b_steps = {optimizer.state[p]["step"].item() for p in model.b.parameters()}
    a_steps = {optimizer.state[p]["step"].item() for p in model.a.parameters()}
    assert b_steps == {2.0} and a_steps == {8.0}  # head b was used on steps 3 and 6


def test_parameter_without_gradient_gets_no_state():
    model = TwoBranch()
    optimizer = minioptim.Adam(model.parameters(), lr=0.01)
    model.zero_grad()
    loss_of(model, 1, use_b=False).backward()
    before = model.b.weight.detach().clone()
    optimizer.step()
    assert model.b.weight not in optimizer.state
    assert torch.equal(model.b.weight.detach(), before)
    assert len(optimizer.state_dict()["state"]) == 4  # trunk and head a: 2 tensors each


CHANGES = {
    "float": lambda m: m.float(),
    "half": lambda m: m.half(),
    "to-float32": lambda m: m.to(torch.float32),
    # a new p.data of another shape, broadcastable into the old one: must not be copied in
    "resized": lambda m: setattr(m.a.weight, "data", torch.zeros(8, dtype=torch.float64)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_casting_or_resizing_the_model_after_construction_raises(change, monkeypatch):
    """minioptim refuses to train a buffer the model left behind; a naive flat buffer
    trains it without a word, and the model's own parameters never move."""
    model = TwoBranch()
    optimizer = minioptim.Adam(model.parameters(), lr=0.01)
    CHANGES[change](model)
    with pytest.raises(RuntimeError, match="moved, cast or resized after the optimizer"):
        optimizer.step()
    monkeypatch.setattr(FlatBuffer, "check_bindings", naive_check_bindings)
    model = TwoBranch()
    optimizer = minioptim.Adam(model.parameters(), lr=0.01)
    model.float()
    optimizer.step()  # no error: the naive optimizer updates a buffer the model left behind
    before = [p.detach().clone() for p in model.parameters()]
    loss_of(model.double(), 1).backward()
    optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_binding_check_repairs_every_view():
    model = TwoBranch()
    optimizer = minioptim.SGD(model.parameters(), lr=0.1)
    model.zero_grad()
    loss_of(model, 1).backward()
    model.trunk.bias.data = model.trunk.bias.detach().clone()
    optimizer.step()
    bucket = optimizer.buckets[0][0]
    for p, value, grad in zip(bucket.params, bucket.param_views, bucket.grad_views, strict=True):
        assert p.data_ptr() == value.data_ptr() and p.grad is grad


@by_id
@pytest.mark.parametrize("when", ["before-construction", "after-zero-grad", "after-backward"])
def test_frozen_parameters_are_left_alone_as_in_torch(case, when):
    """requires_grad=False (e.g. a frozen backbone): never updated, not even by weight
    decay or momentum, once it has no gradient. Frozen before the optimizer is built; or
    between zero_grad() and backward on step 3, when p.grad is still minioptim's (zeroed)
    alias but backward writes nothing into it (torch.optim, whose zero_grad set it to
    None, skips the parameter, and so must minioptim, on that very step); or between
    backward and step() on step 3: the gradient is there, so both update it once."""
    models = []
    for make in (case.ours, case.theirs):
        model = TwoBranch()
        if when == "before-construction":
            model.trunk.requires_grad_(False)
        optimizer = make(case.selects(model.parameters()))
        for step in range(1, STEPS + 1):
            optimizer.zero_grad()
            if not model.trunk.weight.requires_grad:
                assert model.trunk.weight.grad is None  # as after torch's zero_grad
            if step == 3 and when == "after-zero-grad":
                model.trunk.requires_grad_(False)
            loss_of(model, step).backward()
            if step == 3 and when == "after-backward":
                model.trunk.requires_grad_(False)
            optimizer.step()
        models.append(model)
    ours, theirs = models
    if when == "before-construction":
        assert torch.equal(ours.trunk.weight, TwoBranch().trunk.weight)
    assert_same_models(ours, theirs, case)


def test_unfrozen_parameter_starts_training():
    model = TwoBranch()
    model.trunk.requires_grad_(False)
    optimizer = minioptim.AdamW(model.parameters(), lr=0.01)
    model.trunk.requires_grad_(True)
    optimizer.zero_grad()
    loss_of(model, 1).backward()
    before = model.trunk.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(model.trunk.weight, before)
    assert model.trunk.weight.grad.data_ptr() >= optimizer.buckets[0][0].grad.data_ptr()


def test_sparse_gradients_are_refused():
    p = torch.zeros(4, requires_grad=True)
    optimizer = minioptim.SGD([p], lr=0.1)
    p.grad = torch.sparse_coo_tensor([[1]], [1.0], (4,), check_invariants=True)
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        optimizer.step()


@by_id
def test_a_step_between_forward_and_backward_is_caught_by_autograd_as_in_torch(case):
    """The update runs on the buffer, but autograd must see each parameter modified in
    place, as after torch.optim's step: backward through the old graph raises."""
    for make in (case.theirs, case.ours):
        model = TwoBranch()
        params = case.selects(model.parameters())
        optimizer = make(params)
        loss_of(model, 1).backward()
        stale = sum((p * p).sum() for p in params)  # saves every parameter for backward
        optimizer.step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            stale.backward()


# -- what cannot move into a buffer unnoticed: refused, never silently changed -------------


def tied_through_data():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight.data = a.weight.data  # two Parameters, one memory: torch.optim updates it twice
    return [*a.parameters(), *b.parameters()]


def shared():
    return list(nn.Linear(3, 3).share_memory().parameters())  # Hogwild


def channels_last():
    return list(nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last).parameters())


@pytest.mark.parametrize(
    "make, message",
    [
        (tied_through_data, "parameters 0 and 2 .* share memory"),
        (shared, "shared memory"),
        (channels_last, "channels_last"),
    ],
)
def test_parameters_that_cannot_be_packed_are_refused_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        minioptim.Adam(make())


def test_parameters_tied_to_one_in_an_earlier_group_are_refused():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    optimizer = minioptim.Adam(a.parameters())
    b.weight.data = a.weight.data
    with pytest.raises(ValueError, match="share memory"):
        optimizer.add_param_group({"params": list(b.parameters())})
    assert len(optimizer.param_groups) == 1  # the refused group was not added


def tie(net):
    net[2].weight.data = net[0].weight.data


def vector_to_parameters(net):
    nn.utils.vector_to_parameters(torch.zeros(sum(p.numel() for p in net.parameters())),
                                  net.parameters())  # fmt: skip


def assigned_and_kept(net):
    net.kept = torch.zeros_like(net[0].weight)
    net[0].weight.data = net.kept  # in torch.optim, net.kept would follow the updates


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda net: net.share_memory(), "shared memory"),
        (lambda net: net.to(memory_format=torch.channels_last), "channels_last"),
        (tie, "another parameter of this optimizer"),
        (vector_to_parameters, "memory that another tensor holds too"),
        (assigned_and_kept, "memory that another tensor holds too"),
    ],
    ids=["share_memory", "channels_last", "tied", "vector_to_parameters", "assigned, kept"],
)
def test_parameters_changed_after_construction_in_a_way_that_cannot_be_repaired_raise(
    change, message
):
    """Re-adopting would copy the new memory into the buffer and point p.data back: the
    shared memory, the memory format, the tie or the caller's vector would silently stop
    following the parameter. So the step raises instead of training."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 2, 3, padding=1))
    optimizer = minioptim.SGD(net.parameters(), lr=0.1)
    change(net)
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.randn(1, 2, 3, 3)).sum().backward()
    with pytest.raises(RuntimeError, match=message):
        optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda optimizer, extra: optimizer.param_groups[0]["params"].append(extra),
        lambda optimizer, extra: optimizer.param_groups[0]["params"].pop(),
        lambda optimizer, extra: optimizer.param_groups.pop(),
    ],
    ids=["appended", "removed", "group removed"],
)
def test_changing_param_groups_by_hand_raises_instead_of_ignoring_it(change):
    """torch.optim reads group["params"] at every step; minioptim packed them once."""
    net = nn.Linear(3, 3)
    extra = nn.Parameter(torch.ones(2))
    optimizer = minioptim.Adam([net.weight])
    optimizer.add_param_group({"params": [net.bias]})
    change(optimizer, extra)
    net(torch.ones(1, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="add_param_group"):
        optimizer.step()


def test_a_step_inside_a_cuda_graph_capture_raises(monkeypatch):
    """On the CPU the capture is pretended (tests/test_cuda.py captures for real)."""
    optimizer = minioptim.Adam([nn.Parameter(torch.ones(3))])
    optimizer._on_cuda = True  # as if its buckets were on a GPU
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="captured"):
        optimizer.step()
