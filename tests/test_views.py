"""The fused design: p.data and p.grad are views of one buffer per bucket."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import minioptim

OPTIMIZERS = [
    lambda ps: minioptim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: minioptim.Adam(ps, lr=0.1, amsgrad=True),
    lambda ps: minioptim.AdamW(ps, lr=0.1),
    lambda ps: minioptim.SignSGD(ps, lr=0.1, momentum=0.9),
]


class CountOps(TorchDispatchMode):
    """Counts the ATen operations that run inside a `with` block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


def mlp(layers: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(8, 8) for _ in range(layers)])


def test_writing_the_buffer_changes_the_model():
    model = mlp(2)
    optimizer = minioptim.Adam(model.parameters())
    optimizer.zero_grad()  # binds p.grad (None until then, as with torch.optim)
    bucket = optimizer.buckets[0][0]
    with torch.no_grad():
        bucket.param.copy_(torch.arange(bucket.param.numel()))
        bucket.grad.fill_(7.0)
    for p in model.parameters():
        i = next(i for i, q in enumerate(bucket.params) if q is p)
        start, stop = bucket.offsets[i], bucket.offsets[i + 1]
        assert torch.equal(p.detach().flatten(), bucket.param[start:stop])
        assert torch.equal(p.grad.flatten(), bucket.grad[start:stop])
        assert p.data_ptr() == bucket.param[start:].data_ptr()
        assert p.grad.data_ptr() == bucket.grad[start:].data_ptr()


def test_every_parameter_has_a_storage_of_its_own_sized_like_it():
    """Serializers (safetensors, accelerate, torch.save) look at storages: each parameter
    must look independent, though it lives in the buffer."""
    model = mlp(3)
    minioptim.AdamW(model.parameters()).zero_grad()
    for tensors in ([p.detach() for p in model.parameters()], [p.grad for p in model.parameters()]):
        storages = [t.untyped_storage() for t in tensors]
        assert len({s.data_ptr() for s in storages}) == len(tensors)
        assert [s.nbytes() for s in storages] == [t.numel() * t.element_size() for t in tensors]
        assert all(t.storage_offset() == 0 for t in tensors)


def test_construction_keeps_values_and_existing_gradients():
    model = mlp(2)
    values = [p.detach().clone() for p in model.parameters()]
    model(torch.ones(1, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    minioptim.SGD(model.parameters(), lr=0.1)
    for p, value, grad in zip(model.parameters(), values, grads, strict=True):
        assert torch.equal(p.detach(), value) and torch.equal(p.grad, grad)


def test_a_new_optimizer_leaves_missing_gradients_none_and_binds_them_later():
    """As with torch.optim, p.grad stays None until the first backward or zero_grad():
    torch.distributed.checkpoint initialises a new optimizer's state only when every
    p.grad is None (otherwise the load restores nothing). The first gradient is copied
    into the buffer at the first step; zero_grad() makes p.grad an alias at once."""
    model = mlp(2)
    optimizer = minioptim.SGD(model.parameters(), lr=0.1)
    assert all(p.grad is None for p in model.parameters())
    model(torch.ones(1, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    bucket = optimizer.buckets[0][0]
    for p, grad, value in zip(model.parameters(), grads, before, strict=True):
        i = next(i for i, q in enumerate(bucket.params) if q is p)
        assert p.grad.data_ptr() == bucket.grad[bucket.offsets[i] :].data_ptr()
        assert torch.equal(p.detach(), value.add(grad, alpha=-0.1))


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_zero_grad_is_one_fill_per_bucket(make):
    model = mlp(5)
    model.double()[0].float()  # two dtypes: two buckets
    optimizer = make(model.parameters())
    optimizer.zero_grad()
    for p in model.parameters():
        p.grad.fill_(3.0)
    with CountOps() as counter:
        optimizer.zero_grad()
    assert len(counter.ops) == 2, counter.ops
    assert all(op.startswith(("zero_", "fill_")) for op in counter.ops), counter.ops
    assert all(p.grad.abs().sum() == 0 for p in model.parameters())


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_step_cost_does_not_grow_with_the_number_of_tensors(make):
    """An update is a fixed handful of operations on the buffer, not a loop over tensors."""
    counts = []
    for layers in (2, 40):
        model = mlp(layers)
        optimizer = make(model.parameters())
        optimizer.zero_grad()
        for p in model.parameters():
            p.grad.normal_()
        optimizer.step()  # first step creates the state
        with CountOps() as counter:
            optimizer.step()
        counts.append(len(counter.ops))
    assert counts[0] == counts[1], counts
    assert counts[0] < 20, counts


def test_after_re_adopting_replaced_data_a_step_costs_what_it_did():
    """p.data replaced once: the next step copies the new values in; the steps after it
    find every pointer bound again and copy nothing (two pointer comparisons each)."""
    model = mlp(3)
    optimizer = minioptim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    for p in model.parameters():
        p.grad.normal_()
    with CountOps() as before:
        optimizer.step()
    model[1].weight.data = model[1].weight.detach().clone()
    optimizer.step()  # re-adopts
    with CountOps() as after:
        optimizer.step()
    assert after.ops == before.ops


def test_zero_grad_after_set_to_none_gives_every_parameter_its_alias_back():
    model = mlp(2)
    optimizer = minioptim.Adam(model.parameters())
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    optimizer.zero_grad()
    bucket = optimizer.buckets[0][0]
    for p, view in zip(bucket.params, bucket.grad_views, strict=True):
        assert p.grad is view and not p.grad.any()


def test_zero_grad_sets_frozen_parameters_gradients_to_none_as_torch():
    model = mlp(2)
    optimizer = minioptim.SGD(model.parameters(), lr=0.1, weight_decay=0.1)
    model[0].requires_grad_(False)
    optimizer.zero_grad()
    assert model[0].weight.grad is None and model[0].bias.grad is None
    assert model[1].weight.grad is not None


def test_layouts_of_runs_are_relative_to_their_slice_and_cached_per_run():
    params = [torch.randn(s, requires_grad=True) for s in [(2, 3), (4,), (2, 3), ()]]
    bucket = minioptim.SGD(params, lr=0.1).buckets[0][0]
    assert [tuple(p.shape) for p in bucket.params] == [(2, 3), (2, 3), (4,), ()]
    whole, tail, middle = bucket.layout(), bucket.layout(1), bucket.layout(1, 3)
    assert whole.offsets == (0, 6, 12, 16, 17)
    assert tail.offsets == (0, 6, 10, 11) and middle.offsets == (0, 6, 10)
    assert middle.shapes == ((2, 3), (4,)) and len({id(whole), id(tail), id(middle)}) == 3
    assert bucket.layout(1, 3) is middle
    flat = bucket.param[6:16]
    views = middle.views(flat)
    assert [v.shape for v in views] == [(2, 3), (4,)]
    assert all(torch.equal(v, p.detach()) for v, p in zip(views, bucket.params[1:3], strict=True))
    scalars = middle.views(torch.arange(2.0))  # one number per parameter: 0-d views
    assert [v.shape for v in scalars] == [(), ()] and [v.item() for v in scalars] == [0, 1]
    torch.testing.assert_close(
        middle.expand(torch.tensor([1.0, 2.0])), torch.tensor([1.0] * 6 + [2.0] * 4)
    )
