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
    capture unless capturable=True, and so does minioptim (tests/test_capture.py: with it)."""
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


# -- precision modes (minioptim.precision) on the device ------------------------------------------


def test_random_bits_and_stochastic_rounding_are_the_same_on_the_device():
    """The bits are an integer hash and the rounding integer arithmetic: bit for bit the
    CPU's, so a seed gives the same rounding on every device."""
    from minioptim.precision import keys, random_bits, salt, stochastic_round

    k1, k2 = keys(seed=5, salt=salt(0, 0), step=3)
    bits = random_bits(0, 2**20, k1, k2, "cpu")
    assert torch.equal(random_bits(0, 2**20, k1, k2, "cuda").cpu(), bits)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2**20, generator=gen) * torch.logspace(-30, 30, 2**20)
    for dtype in (torch.bfloat16, torch.float16):
        on_device = stochastic_round(x.cuda(), dtype, bits.cuda()).cpu()
        assert torch.equal(on_device, stochastic_round(x, dtype, bits))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_master_weights_on_the_device_are_the_float32_iterates(case, impl):
    """Bit for bit the same optimizer's float32 run on the device (same path: the fast
    path runs the fused CUDA kernels on the float32 master weights)."""
    tensors = case.tensors(torch.float32)
    half = leaf_copies(on_cuda([t.bfloat16() for t in tensors]))
    full = leaf_copies(on_cuda([t.bfloat16().float() for t in tensors]))
    ours, theirs = case.ours(half, impl, precision="master"), case.ours(full, impl)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(half, full, strict=True):
            g = torch.randn(p.shape, generator=gen).bfloat16().cuda()
            p.grad, q.grad = g, g.float()
        ours.step()
        theirs.step()
    for p, q in zip(half, full, strict=True):
        assert torch.equal(ours.state[p]["master_weight"], q)
        assert torch.equal(p, q.bfloat16())


@pytest.mark.parametrize("impl_", ["fast", "compiled"])
@pytest.mark.parametrize("mode", ["stochastic", "kahan"])
@pytest.mark.parametrize("case", CONTINUOUS, ids=lambda c: c.id)
def test_stochastic_and_kahan_on_the_device_follow_the_cpu(case, mode, impl_):
    """Same bits on every device, so the device's bfloat16 parameters stay within a few
    ulps of the CPU's over 5 steps (the rule's float32 arithmetic rounds differently
    there, which can send a rounding the other way). impl='compiled' runs casts, rule and
    rounding as one Triton kernel (precision.fused)."""
    if impl_ == "compiled" and case.name == "Muon":
        pytest.skip("Muon compiles for ~30 s; its compiled path is covered in float32")
    tensors = [t.bfloat16() for t in case.tensors(torch.float32)]
    device, host = leaf_copies(on_cuda(tensors)), leaf_copies(tensors)
    ours = case.ours(device, impl_, precision=mode)
    reference = case.ours(host, "reference", precision=mode)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(device, host, strict=True):
            g = torch.randn(p.shape, generator=gen).bfloat16()
            p.grad, q.grad = g.cuda(), g
        ours.step()
        reference.step()
    eps = torch.finfo(torch.bfloat16).eps
    for p, q in zip(device, host, strict=True):
        assert p.dtype == torch.bfloat16
        torch.testing.assert_close(p.cpu().float(), q.float(), rtol=8 * eps, atol=8 * eps)


def test_bytes_per_parameter_on_the_device_match_memory_allocated():
    """The bench's accounting against the caching allocator: memory_allocated grows by the
    counted bytes (plus each allocation's rounding to 512 bytes, and a cuBLAS workspace
    that Muon's first matrix product may allocate), and the step's peak is at least that."""
    from minioptim.bench import cases as bench_cases
    from minioptim.bench import memory

    shapes = bench_cases.scaled(bench_cases.llm_shapes(layers=2), 1e-2)
    for r in memory.precision_records(shapes, device="cuda"):
        n = r["n_params"]
        slack = max(0.02 * r["total_bpp"] * n, 64 * 2**20)
        assert abs(r["measured_bpp"] - r["total_bpp"]) * n <= slack, r
        assert r["peak_bpp"] >= r["measured_bpp"]
