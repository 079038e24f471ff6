"""Real training code breaks flat-buffer views; minioptim notices and repairs them.

Each scenario trains the same model with minioptim and with torch.optim (foreach=False)
and compares the parameters. Each scenario also runs with a *naive* flat-buffer optimizer
(minioptim with the binding check switched off, as in the design minioptim grew from) to
show that the scenario really breaks the views: there the model silently stops training
or trains the wrong values, and the comparison fails.
"""

import pytest
import torch
from conftest import build
from torch import nn

import minioptim
from minioptim.flat import FlatBuffer

STEPS = 8
TOLERANCE = dict(rtol=1e-10, atol=1e-12)  # float64 models; the optimizers differ by rounding


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
    unused_head,
    assigned_gradients,
    replaced_data,
    loaded_weights,
]

OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "Adam": dict(lr=0.01, weight_decay=0.01),
    "AdamW": dict(lr=0.01, amsgrad=True),
}


def train(library, name, scenario):
    """Train a fresh model with `library.name` (torch.optim's with foreach=False)."""
    model = TwoBranch()
    optimizer = build(library, name, model.parameters(), **OPTIMIZERS[name])
    for step in range(1, STEPS + 1):
        scenario(model, optimizer, step)
    return model


@pytest.fixture
def naive(monkeypatch):
    """minioptim without the binding check: views are assumed, never verified."""
    monkeypatch.setattr(FlatBuffer, "check_bindings", lambda self, owner: [True] * len(self))


def same_parameters(ours, theirs) -> bool:
    return all(
        torch.allclose(p, q, **TOLERANCE)
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_matches_torch(scenario, name):
    ours, theirs = train(minioptim, name, scenario), train(torch.optim, name, scenario)
    for (key, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, **TOLERANCE, msg=lambda m, k=key: f"{k}: {m}")
    assert not same_parameters(ours, TwoBranch()), "the model must have trained"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if s is not loaded_weights], ids=lambda s: s.__name__
)
def test_scenario_breaks_a_naive_flat_buffer_optimizer(scenario, name, naive):
    ours, theirs = train(minioptim, name, scenario), train(torch.optim, name, scenario)
    assert not same_parameters(ours, theirs)


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


@pytest.mark.parametrize(
    "cast",
    [lambda m: m.float(), lambda m: m.half(), lambda m: m.to(torch.float32)],
    ids=["float", "half", "to-float32"],
)
def test_casting_the_model_after_construction_raises(cast):
    model = TwoBranch()
    optimizer = minioptim.Adam(model.parameters(), lr=0.01)
    cast(model)
    with pytest.raises(RuntimeError, match="moved, cast or resized after the optimizer"):
        optimizer.step()


def test_casting_trains_an_orphaned_buffer_in_a_naive_optimizer(naive):
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


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_parameters_are_left_alone_as_in_torch(name):
    """requires_grad=False (e.g. a frozen backbone) passed to the optimizer: never updated,
    not even by weight decay or momentum, before or after zero_grad()."""
    models = []
    for library in (minioptim, torch.optim):
        model = TwoBranch()
        model.trunk.requires_grad_(False)
        optimizer = build(library, name, model.parameters(), **OPTIMIZERS[name])
        for step in range(1, STEPS + 1):
            optimizer.zero_grad()
            loss_of(model, step).backward()
            optimizer.step()
        models.append(model)
    ours, theirs = models
    assert torch.equal(ours.trunk.weight, TwoBranch().trunk.weight)
    assert ours.trunk.weight.grad is None
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, **TOLERANCE)


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
