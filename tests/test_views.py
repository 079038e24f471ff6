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
    bucket = optimizer._buckets[0][0]
    with torch.no_grad():
        bucket.param[0] = 999.0
        bucket.param[-1] = -5.0
    assert model[0].weight[0, 0].item() == 999.0
    assert model[1].bias[-1].item() == -5.0
    for p in model.parameters():
        start = p.data_ptr() - bucket.param.data_ptr()
        assert 0 <= start < bucket.param.numel() * bucket.param.element_size()
        assert p.grad is not None and p.grad.untyped_storage().data_ptr() == bucket.grad.data_ptr()


def test_construction_keeps_values_and_existing_gradients():
    model = mlp(2)
    values = [p.detach().clone() for p in model.parameters()]
    model(torch.ones(1, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    minioptim.SGD(model.parameters(), lr=0.1)
    for p, value, grad in zip(model.parameters(), values, grads, strict=True):
        assert torch.equal(p.detach(), value) and torch.equal(p.grad, grad)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_zero_grad_is_one_fill_per_bucket(make):
    model = mlp(5)
    model.double()[0].float()  # two dtypes: two buckets
    optimizer = make(model.parameters())
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
        for p in model.parameters():
            p.grad.normal_()
        optimizer.step()  # first step creates the state
        with CountOps() as counter:
            optimizer.step()
        counts.append(len(counter.ops))
    assert counts[0] == counts[1], counts
    assert counts[0] < 20, counts
