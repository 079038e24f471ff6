"""CUDA-only checks (skipped, saying so, on machines without a CUDA device; CI has none).

Every optimizer of the registry against its reference on the device in float32 and
float64; half precision against the same computation in float32 (torch's fused kernels
compute half precision in float32 on CUDA, while torch's own float16 for-loop Adam
overflows: eps = 1e-8 underflows in float16); no host-device synchronization inside
step(); parameters alias the buffer with storages of their own on the device too.
"""

import pytest
import torch
from cases import CASES
from conftest import ACCELERATOR_TOLERANCES

import minioptim
from minioptim.testing import assert_same_trajectory, leaf_copies

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def on_cuda(tensors):
    return [t.cuda() for t in tensors]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_matches_reference_on_cuda(case, impl, dtype):
    # On CUDA the reference path's kernels may round differently from the reference's
    # (different reduction order in matmuls): the fast tolerance for both paths.
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl),
        case.theirs,
        on_cuda(case.tensors(dtype)),
        steps=12,
        gradients="fresh",
        **ACCELERATOR_TOLERANCES[dtype],
    )


# The sign methods are left out: a momentum entry near zero may round to the other sign in
# half precision, which moves that entry by 2 lr, a legitimate difference.
CONTINUOUS = [c for c in CASES if c.name not in ("SignSGD", "Lion")]


@pytest.mark.parametrize("case", CONTINUOUS, ids=lambda c: c.id)
@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_follows_the_float32_computation(case, low):
    """The fast path in half precision stays within a few half-precision ulps per step
    of the same optimizer run in float32 from the same (rounded) start."""
    start = [t.to(low) for t in case.tensors(torch.float32)]
    half = leaf_copies(on_cuda(start))
    full = leaf_copies(on_cuda([t.float() for t in start]))
    ours, reference = case.ours(half), case.ours(full)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        for p, q in zip(half, full, strict=True):
            g = torch.randn(p.shape, generator=gen).cuda()
            p.grad, q.grad = g.to(low), g.to(low).float()
        ours.step()
        reference.step()
    eps = torch.finfo(low).eps
    for p, q in zip(half, full, strict=True):
        assert p.dtype == low
        torch.testing.assert_close(p.float(), q, rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_step_does_not_synchronize_with_the_host(case):
    params = leaf_copies(on_cuda(case.tensors(torch.float32)))
    optimizer = case.ours(params)
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()  # the first step creates the state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        optimizer.step()
        optimizer.zero_grad()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_parameters_alias_the_device_buffer_with_storages_of_their_own():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)).cuda()
    optimizer = minioptim.AdamW(model.parameters())
    bucket = optimizer.buckets[0][0]
    storages = [p.untyped_storage() for p in model.parameters()]
    assert len({s.data_ptr() for s in storages}) == 4
    with torch.no_grad():
        bucket.param.fill_(2.0)
    assert all(torch.all(p == 2.0) for p in model.parameters())
    model(torch.ones(1, 4, device="cuda")).sum().backward()
    assert bucket.grad.abs().sum() > 0  # backward accumulated into the buffer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_capturing_a_step_in_a_cuda_graph_raises_instead_of_replaying_wrong_steps(case):
    """Step-dependent values (Adam's bias corrections, SGD's first-step initialisation)
    are computed on the host: a replay would repeat them. torch.optim refuses such a
    capture unless capturable=True; minioptim refuses it with a message."""
    params = leaf_copies(on_cuda(case.tensors(torch.float32)))
    optimizer = case.ours(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()  # warm up outside the graph, as capture requires
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), pytest.raises(RuntimeError, match="CUDA graph"):
        with torch.cuda.graph(torch.cuda.CUDAGraph()):
            optimizer.step()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_compiled_rule_matches_reference_on_cuda(case):
    """impl='compiled' generates Triton kernels here (C++ on the CPU, tests/test_compiled.py)."""
    tolerance = dict(rtol=0, atol=4e-3) if case.name == "Muon" else ACCELERATOR_TOLERANCES[
        torch.float32]  # fmt: skip
    assert_same_trajectory(
        lambda ps: case.ours(ps, "compiled"),
        case.theirs,
        on_cuda(case.tensors(torch.float32)),
        steps=6,
        **tolerance,
    )
