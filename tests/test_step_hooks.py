"""Step hooks and profiler ranges, as torch.optim has them.

minioptim calls torch.optim's step wrapper (a ``record_function`` range and the pre/post
hooks) only while a profiler runs or a hook is registered, since the range alone costs
about a third of a fused step's host time (``base.observed_only_when_watched``). Each
test runs the same code against torch.optim and compares what the hooks and the
profiler saw.
"""

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import minioptim


def optimizers():
    """A minioptim Adam and a torch.optim Adam over equal parameters with gradients."""
    made = []
    for library in (minioptim, torch.optim):
        params = [torch.ones(3, requires_grad=True)]
        params[0].grad = torch.full((3,), 0.5)
        made.append((params, library.Adam(params, lr=0.1)))
    return made


def test_step_hooks_run_in_torch_optims_order_and_see_the_update():
    seen = {}
    for params, optimizer in optimizers():
        events = seen.setdefault(type(optimizer).__module__.split(".")[0], [])
        before = optimizer.register_step_pre_hook(
            lambda opt, args, kwargs, events=events, p=params[0]: events.append(
                ("pre", type(opt).__name__, args[0] is opt, args[1:], kwargs, round(p[0].item(), 6))
            )
        )
        after = optimizer.register_step_post_hook(
            lambda opt, args, kwargs, events=events, p=params[0]: events.append(
                ("post", round(p[0].item(), 6))
            )
        )
        optimizer.step()
        before.remove()
        after.remove()
        optimizer.step()  # no hook any more
        events.append(("after removal", round(params[0][0].item(), 6)))
    assert seen["minioptim"] == seen["torch"]
    assert [e[0] for e in seen["minioptim"]] == ["pre", "post", "after removal"]


def test_a_pre_hook_may_replace_the_arguments_of_step():
    for _, optimizer in optimizers():
        calls = []

        def closure(calls=calls):
            calls.append("closure")
            return torch.tensor(1.0)

        # (args holds the optimizer itself first, as step's self)
        optimizer.register_step_pre_hook(lambda opt, a, k: ((opt,), {"closure": closure}))
        assert optimizer.step() == torch.tensor(1.0)
        assert calls == ["closure"]


def test_global_hooks_see_every_optimizer():
    seen = []
    pre = register_optimizer_step_pre_hook(lambda opt, a, k: seen.append(("pre", type(opt))))
    post = register_optimizer_step_post_hook(lambda opt, a, k: seen.append(("post", type(opt))))
    try:
        for _, optimizer in optimizers():
            optimizer.step()
    finally:
        pre.remove()
        post.remove()
    assert seen == [
        ("pre", minioptim.Adam),
        ("post", minioptim.Adam),
        ("pre", torch.optim.Adam),
        ("post", torch.optim.Adam),
    ]


def test_the_profiler_shows_a_step_range_named_as_torch_optims():
    names = []
    for _, optimizer in optimizers():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            optimizer.step()
        names.append({e.name for e in prof.events() if e.name.startswith("Optimizer.step#")})
    assert names == [{"Optimizer.step#Adam.step"}] * 2


@pytest.mark.parametrize("name", ["SGD", "Lion", "Muon"])
def test_every_optimizer_class_gets_the_wrapper_once(name):
    cls = getattr(minioptim, name)
    shape = (3, 2) if name == "Muon" else (3,)
    for _ in range(2):  # a second instance does not wrap the class's step again
        p = torch.zeros(shape, requires_grad=True)
        optimizer = cls([p], lr=0.1)
    assert cls.step.hooked
    assert cls.step.__wrapped__.__name__ == "step"
    assert not hasattr(cls.step.__wrapped__, "hooked")
    calls = []
    optimizer.register_step_post_hook(lambda opt, a, k: calls.append(1))
    p.grad = torch.ones(shape)
    optimizer.step()
    assert calls == [1]
