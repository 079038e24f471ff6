"""Shared fixtures: parameter shapes that exercise every layout the flat buffer must handle."""

import pytest
import torch

DTYPES = [torch.float32, torch.float64]
IMPLS = ["reference", "fast"]

# Tolerances per (impl, dtype) against torch.optim's for-loop on the CPU. The reference
# path repeats its operations and is bit-identical (rtol = atol = 0); the fast path runs
# torch's fused kernels, which compute in a different order, so it agrees to float
# rounding. Measured over every test that uses them (12-30 steps; 3,500 hypothesis
# problems with lr up to 0.5; an AVX-512 CPU): the largest |ours - reference| used 0.50 of
# the float32 bound and 0.34 of the float64 bound below: each is 2-3x the agreement.
TOLERANCES = {
    ("reference", torch.float32): dict(rtol=0, atol=0),
    ("reference", torch.float64): dict(rtol=0, atol=0),
    ("fast", torch.float32): dict(rtol=3e-6, atol=3e-7),
    ("fast", torch.float64): dict(rtol=1e-13, atol=1e-15),
}

# On accelerators the kernels themselves differ from the CPU's (fused CUDA kernels, other
# reduction orders in matmuls), so device tests keep the looser bounds.
ACCELERATOR_TOLERANCES = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-14),
}


def build(library, name: str, params, **options) -> torch.optim.Optimizer:
    """``library.<name>(params, **options)``: minioptim's optimizer or torch.optim's, the
    latter with ``foreach=False``, the for-loop implementation we take as ground truth."""
    if library is torch.optim:
        options = dict(options, foreach=False)
    return getattr(library, name)(params, **options)


def make_tensors(dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """A 0-d, 1-d, 2-d, 4-d and a non-contiguous (transposed) tensor."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return [randn(()), randn(7), randn(5, 3), randn(2, 3, 3, 2), randn(4, 6).t()]


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request):
    return request.param


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


@pytest.fixture
def one_thread():
    """Run a test with torch on one thread, and restore the thread count after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
