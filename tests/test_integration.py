"""minioptim works unchanged with schedulers, GradScaler, gradient clipping and torch.compile."""

import pytest
import torch
from cases import CASES
from conftest import build
from torch import nn
from torch.optim import lr_scheduler as sched

import minioptim

STEPS = 12

SCHEDULERS = {
    "LambdaLR": lambda o: sched.LambdaLR(o, lambda s: 0.95**s),
    "MultiplicativeLR": lambda o: sched.MultiplicativeLR(o, lambda s: 0.9),
    "StepLR": lambda o: sched.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: sched.MultiStepLR(o, milestones=[2, 5], gamma=0.3),
    "ConstantLR": lambda o: sched.ConstantLR(o, factor=0.5, total_iters=4),
    "LinearLR": lambda o: sched.LinearLR(o, start_factor=0.2, total_iters=5),
    "ExponentialLR": lambda o: sched.ExponentialLR(o, gamma=0.9),
    "SequentialLR": lambda o: sched.SequentialLR(
        o, [sched.LinearLR(o, 0.2, total_iters=3), sched.ExponentialLR(o, 0.9)], milestones=[3]
    ),
    "PolynomialLR": lambda o: sched.PolynomialLR(o, total_iters=8, power=2.0),
    "CosineAnnealingLR": lambda o: sched.CosineAnnealingLR(o, T_max=10),
    "ChainedScheduler": lambda o: sched.ChainedScheduler(
        [sched.StepLR(o, 3, 0.5), sched.ExponentialLR(o, 0.95)]
    ),
    "ReduceLROnPlateau": lambda o: sched.ReduceLROnPlateau(o, patience=0, factor=0.5),
    "CyclicLR": lambda o: sched.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=3),
    "OneCycleLR": lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=STEPS),
    "CosineAnnealingWarmRestarts": lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=4),
}

OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "Adam": dict(lr=0.05, weight_decay=0.01),
    "AdamW": dict(lr=0.05),
}
by_id = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)).double()


def batch(step, dtype=torch.float64):
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(32, 6, generator=gen, dtype=dtype)
    return x, x[:, :1].sin() + x[:, 1:2]


def make(library, name, params):
    return build(library, name, params, **OPTIMIZERS[name])


def assert_same_models(ours, theirs, **tolerance):
    tolerance = tolerance or dict(rtol=1e-10, atol=1e-12)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, **tolerance)


@by_id
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_every_lr_scheduler_drives_minioptim_as_torch(scheduler, case):
    """Every scheduler, every optimizer of the registry: the same learning rates (and
    momenta, betas) at every step, and the same model as under the case's reference."""
    runs = []
    for build_optimizer in (case.ours, case.theirs):
        net = model()
        optimizer = build_optimizer(case.selects(net.parameters()))
        schedule = SCHEDULERS[scheduler](optimizer)
        hyper_parameters = []
        for step in range(STEPS):
            x, y = batch(step)
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()
            schedule.step(loss.item()) if scheduler == "ReduceLROnPlateau" else schedule.step()
            group = optimizer.param_groups[0]
            hyper_parameters.append([group["lr"], group.get("momentum"), group.get("betas")])
        runs.append((net, hyper_parameters))
    (ours, our_hyper), (theirs, their_hyper) = runs
    assert our_hyper == their_hyper
    assert len({str(h) for h in our_hyper}) > 1, "the scheduler must have changed something"
    assert_same_models(ours, theirs, **case.tolerance("fast", torch.float64))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_grad_scaler_skips_steps_with_inf_or_nan_exactly_as_torch(name):
    runs = []
    for library in (minioptim, torch.optim):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
        optimizer = make(library, name, net.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        snapshots, scales = [], []
        for step in range(6):
            x, y = batch(step, torch.float32)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.mse_loss(net(x).float(), y)
            if step in (2, 4):  # an overflow: every gradient becomes inf or nan
                loss = loss * float("inf") if step == 2 else loss * float("nan")
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            snapshots.append([p.detach().clone() for p in net.parameters()])
            scales.append(scaler.get_scale())
        runs.append((net, snapshots, scales))
    (ours, snapshots, scales), (theirs, _, their_scales) = runs
    assert scales == their_scales and scales[2] == scales[1] / 2
    for skipped in (2, 4):
        assert all(
            torch.equal(a, b)
            for a, b in zip(snapshots[skipped], snapshots[skipped - 1], strict=True)
        )
    assert all(torch.isfinite(p).all() for p in ours.parameters())
    assert_same_models(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_clip_grad_norm_works_on_the_views(name):
    runs = []
    for library in (minioptim, torch.optim):
        net = model()
        optimizer = make(library, name, net.parameters())
        norms = []
        for step in range(STEPS):
            x, y = batch(step)
            optimizer.zero_grad()
            (100 * nn.functional.mse_loss(net(x), y)).backward()
            norms.append(nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.5).item())
            optimizer.step()
        runs.append((net, norms))
    (ours, our_norms), (theirs, their_norms) = runs
    assert max(our_norms) > 0.5  # clipping was active
    torch.testing.assert_close(our_norms, their_norms, rtol=1e-10, atol=0)
    assert_same_models(ours, theirs)


def test_compiled_model_trains_like_torch():
    runs = []
    for library in (minioptim, torch.optim):
        torch._dynamo.reset()
        net = model()
        optimizer = make(library, "AdamW", net.parameters())
        compiled = torch.compile(net)
        for step in range(6):
            x, y = batch(step)
            optimizer.zero_grad()
            nn.functional.mse_loss(compiled(x), y).backward()
            optimizer.step()
        runs.append(net)
    assert_same_models(*runs, rtol=1e-9, atol=1e-11)
    assert not torch.equal(runs[0][0].weight, model()[0].weight)
