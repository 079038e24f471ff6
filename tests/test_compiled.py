"""``impl="compiled"``: the reference rule compiled by torch.compile (inductor, C++ here).

Every optimizer of the registry, a student's rule, a learning-rate schedule that must not
recompile, and a rule that cannot be compiled (it falls back to eager, with a warning).

Tolerances, measured: the elementwise rules agree with the reference to float rounding
(inductor fuses multiply-adds): the fast path's bounds. Muon's Newton–Schulz runs in
bfloat16, where the compiled chain keeps some intermediates in float32 and rounds
elsewhere: the two chains' updates (about lr = 0.02 per entry) differ in their last
bfloat16 bits, and after 6 steps the parameters differ by up to 1.8e-3 (measured), so
its bound is 4e-3.
"""

import copy
import warnings

import pytest
import torch
from cases import CASES
from conftest import TOLERANCES
from test_extension_api import RMSprop
from torch._dynamo.utils import counters

import minioptim
from minioptim.testing import assert_same_trajectory

MUON = dict(rtol=0, atol=4e-3)
# Muon compiles for about 30 s on a 2-core CPU: once, in float64; the others in both.
RUNS = [(c, d) for c in CASES for d in (torch.float32, torch.float64)
        if c.name != "Muon" or (c.id == "muon" and d == torch.float64)]  # fmt: skip


@pytest.mark.parametrize("case, dtype", RUNS, ids=lambda x: getattr(x, "id", str(x)[6:]))
def test_compiled_rule_matches_the_reference(case, dtype):
    tolerance = MUON if case.name == "Muon" else TOLERANCES["fast", dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a fallback to eager would warn
        assert_same_trajectory(
            lambda ps: case.ours(ps, "compiled"),
            case.theirs,
            case.tensors(dtype),
            steps=6,
            **tolerance,
        )


def compiled_rmsprop(params, **options):
    """A student's class whose __init__ does not forward impl: switched afterwards."""
    optimizer = RMSprop(params, **options)
    optimizer.impl = "compiled"
    return optimizer


def test_a_students_rule_compiles_and_matches_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert_same_trajectory(
            lambda ps: compiled_rmsprop(ps, lr=0.01, momentum=0.9, centered=True),
            lambda ps: torch.optim.RMSprop(
                ps, lr=0.01, momentum=0.9, centered=True, foreach=False
            ),  # fmt: skip
            [torch.randn(5, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)],
            steps=8,
            **TOLERANCES["fast", torch.float64],
        )


def test_a_schedule_changing_lr_every_step_does_not_recompile():
    """lr and step reach the graph as tensors: one graph for every step (Adam), not one
    per learning rate."""
    params = [torch.randn(10, requires_grad=True), torch.randn(4, 3, requires_grad=True)]
    optimizer = minioptim.Adam(params, lr=0.01, impl="compiled")
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.9**epoch)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()  # the first step compiles
    compiled_graphs = counters["stats"]["unique_graphs"]
    for _ in range(5):
        schedule.step()
        optimizer.step()
    assert counters["stats"]["unique_graphs"] == compiled_graphs


class SubtractingMomentum(minioptim.FusedOptimizer):
    """A rule written with ``sub_(..., alpha=group["lr"])``, as students write it."""

    def __init__(self, params, lr=0.1, **kwargs):
        super().__init__(params, dict(lr=lr), **kwargs)

    def state_names(self, group):
        return ("velocity",)

    def update(self, group, param, grad, state, step):
        state["velocity"].mul_(0.9).add_(grad)
        param.sub_(state["velocity"], alpha=group["lr"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sub_with_a_scheduled_lr_uses_each_steps_lr(dtype):
    """Inductor would compile ``sub_(x, alpha=lr)`` with the first step's lr for every
    step (see minioptim.compiled): the compiled trajectory must equal the eager one."""
    results = []
    for impl in ("compiled", "reference"):
        params = [torch.ones(6, dtype=dtype, requires_grad=True)]
        optimizer = SubtractingMomentum(params, lr=0.1, impl=impl)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch)
        for step in range(5):
            params[0].grad = torch.full((6,), float(step + 1), dtype=dtype)
            optimizer.step()
            schedule.step()
        results.append(params[0].detach())
    torch.testing.assert_close(results[0], results[1], **TOLERANCES["fast", dtype])


class Thresholded(minioptim.FusedOptimizer):
    """A rule with a data-dependent branch on a tensor's value: not compilable whole."""

    def __init__(self, params, lr=0.1, **kwargs):
        super().__init__(params, dict(lr=lr), **kwargs)

    def update(self, group, param, grad, state, step):
        if grad.abs().max() > 1:  # reads a value on the host
            param.add_(grad.sign(), alpha=-group["lr"])
        else:
            param.add_(grad, alpha=-group["lr"])


def test_a_rule_that_cannot_be_compiled_runs_eagerly_after_one_warning():
    results = []
    for impl, expect_warning in (("compiled", True), ("reference", False)):
        param = torch.zeros(3, requires_grad=True)
        optimizer = Thresholded([param], impl=impl)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for value in (2.0, 0.5, 3.0):
                param.grad = torch.full((3,), value)
                optimizer.step()
        messages = [str(w.message) for w in caught if "impl='compiled'" in str(w.message)]
        assert len(messages) == int(expect_warning), messages
        results.append(param.detach().clone())
    assert torch.equal(*results)


def auto_adam_and_muon(monkeypatch, compiles_on):
    """Which rules impl="auto" compiles when AUTO_COMPILED is ``compiles_on``."""
    monkeypatch.setattr(minioptim.base, "AUTO_COMPILED", compiles_on)
    seen = set()
    real = minioptim.base.compiled

    def spy(function, method=False):
        seen.add(function.__name__)
        return real(function, method)

    monkeypatch.setattr(minioptim.base, "compiled", spy)
    for make in (minioptim.Adam, minioptim.Muon):
        param = torch.randn(4, 3, requires_grad=True)
        param.grad = torch.randn(4, 3)
        make([param]).step()
    return seen


def test_auto_compiles_on_the_devices_listed_and_elsewhere_takes_the_fast_path(monkeypatch):
    """The CPU is not listed (there the fused kernels were as fast), so nothing compiles;
    listed (as CUDA is) with its package installed, Adam's rule compiles and Muon's,
    which takes a layout, does not; listed with a package missing, nothing compiles."""
    assert "cpu" not in minioptim.base.AUTO_COMPILED
    assert auto_adam_and_muon(monkeypatch, minioptim.base.AUTO_COMPILED) == set()
    assert auto_adam_and_muon(monkeypatch, {"cpu": "torch"}) == {"adam_"}
    assert auto_adam_and_muon(monkeypatch, {"cpu": "no_such_compiler_package"}) == set()


def test_an_impl_set_after_construction_holds_on_every_device(monkeypatch):
    """optimizer.impl = "fast" (or "reference") chooses that path on a device where
    impl="auto" would compile, and survives copy.deepcopy."""
    monkeypatch.setattr(minioptim.base, "AUTO_COMPILED", {"cpu": "torch"})  # as on CUDA
    compiled_calls = []
    real = minioptim.base.compiled

    def spy(function, method=False):
        compiled_calls.append(function.__name__)
        return real(function, method)

    monkeypatch.setattr(minioptim.base, "compiled", spy)
    param = torch.randn(4, 3, requires_grad=True)
    optimizer = minioptim.Adam([param])
    optimizer.impl = "fast"
    for copy_or_not in (lambda o: o, copy.deepcopy):
        stepped = copy_or_not(optimizer)
        for p in stepped.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        stepped.step()
        assert stepped.impl == "fast" and not stepped.auto
    assert compiled_calls == []


class Unfusable(minioptim.FusedOptimizer):
    """Thresholded's rule, with a fast path (the same rule, counted). Its own update: a
    function's compiled rule lives for the process, and Thresholded's has failed."""

    fast_calls = 0

    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    def update(self, group, param, grad, state, step):
        if grad.abs().max() > 1:  # reads a value on the host
            param.add_(grad.sign(), alpha=-group["lr"])
        else:
            param.add_(grad, alpha=-group["lr"])

    def fast_update(self, group, param, grad, state, step):
        type(self).fast_calls += 1
        self.update(group, param, grad, state, step)


def test_where_auto_cannot_compile_it_warns_once_and_takes_the_fast_path(monkeypatch):
    monkeypatch.setattr(minioptim.base, "AUTO_COMPILED", {"cpu": "torch"})  # as on CUDA
    param = torch.zeros(3, requires_grad=True)
    optimizer = Unfusable([param])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for value in (2.0, 0.5, 3.0):
            param.grad = torch.full((3,), value)
            optimizer.step()
    messages = [str(w.message) for w in caught if "impl='compiled'" in str(w.message)]
    assert len(messages) == 1 and "impl='auto'" in messages[0]
    assert Unfusable.fast_calls == 2  # the first step ran the rule eagerly
    assert torch.equal(param.detach(), torch.full((3,), -0.1 - 0.05 - 0.1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_auto_runs_the_compiled_rule_without_waiting_for_the_device(monkeypatch):
    """impl="auto" takes the compiled rule on CUDA: it agrees with the fast path, and a
    step queues its work (lr and step filled on the device) without a synchronization."""
    ran = set()
    real = minioptim.base.compiled
    monkeypatch.setattr(minioptim.base, "compiled", lambda f, **kw: ran.add(f) or real(f, **kw))
    values = [torch.randn(1000, 3), torch.randn(7)]
    auto = [v.cuda().requires_grad_() for v in values]
    fast = [v.cuda().requires_grad_() for v in values]
    optimizers = minioptim.AdamW(auto, lr=0.01), minioptim.AdamW(fast, lr=0.01, impl="fast")
    for step in range(4):
        for p, q in zip(auto, fast, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        if step == 3:  # compiled and warm: no host-device synchronization
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            for optimizer in optimizers:
                optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for p, q in zip(auto, fast, strict=True):
        torch.testing.assert_close(p, q, **TOLERANCES["fast", torch.float32])
    assert ran == {minioptim.functional.adam_}


def trained_with(compile_step, device, steps=6):
    """A small model's parameters after ``steps`` training steps with minioptim.AdamW, the
    step function (forward, backward, optimizer.step()) compiled by ``compile_step``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    model.to(device)
    optimizer = minioptim.AdamW(model.parameters(), lr=0.01)

    def train_step(inputs):
        loss = model(inputs).square().mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    step = compile_step(train_step)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        step(torch.randn(32, 8, generator=generator).to(device))
    return [p.detach().cpu() for p in model.parameters()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_a_training_step_compiled_with_reduce_overhead_equals_eager_steps():
    """torch.compile(mode="reduce-overhead") replays the forward and backward as CUDA
    graphs; optimizer.step() is torch.compiler.disable-d, so it runs between them,
    uncaptured, and no replay repeats a step's bias correction."""
    compiled = trained_with(lambda f: torch.compile(f, mode="reduce-overhead"), "cuda")
    eager = trained_with(lambda f: f, "cuda")
    for p, q in zip(compiled, eager, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
