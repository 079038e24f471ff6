"""Precision modes for float16/bfloat16 parameters (minioptim.precision), each against an
independent reference:

- the rounding: stochastic rounding's expected value over *every* pattern of the random
  bits it reads equals its input exactly (float64 means), for values across the range;
- the issue's problem (64 weights at 1.0, linear regression, 2000 full-batch AdamW steps at
  lr 1e-3): plain bfloat16 never moves a weight, master weights, stochastic rounding and
  Kahan compensation reach the float32 loss within stated factors;
- master weights: the iterates are bit for bit the float32 optimizer's (torch.optim's where
  it has the optimizer), and the parameters those rounded once per step;
- Kahan: p + c stays within its stated bound of the float32 trajectory;
- stochastic rounding: each step's rounding errors are within an ulp and average out;
- every optimizer (and a student's rule) in every mode, on the reference, fast and compiled
  paths; checkpoints round-trip exactly, both ways with torch.optim.
"""

import copy
import io
import math

import pytest
import torch
from cases import BY_NAME, CASES, matrices
from conftest import make_tensors

import minioptim
from minioptim import FusedOptimizer, Precision
from minioptim.bench import cases as bench_cases
from minioptim.bench import memory
from minioptim.precision import (
    COMPENSATION,
    MASTER,
    keys,
    mix32,
    random_bits,
    salt,
    stochastic_round,
)
from minioptim.testing import leaf_copies

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only cost here

HALF = [torch.bfloat16, torch.float16]
HALF_IDS = ["bfloat16", "float16"]
MODES = ["plain", "master", "stochastic", "kahan"]


def ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The gap between the float16/bfloat16 values around ``x`` (float64)."""
    info = torch.finfo(dtype)
    tiny = info.tiny * info.eps  # the smallest subnormal: the gap below the normal range
    exponent = torch.floor(torch.log2(x.double().abs().clamp_min(info.tiny)))
    return torch.maximum(torch.exp2(exponent) * info.eps, torch.tensor(tiny).double())


# -- the rounding ------------------------------------------------------------------------------


def float32_inputs() -> torch.Tensor:
    """Values across bfloat16's and float16's ranges, of both signs: exactly representable
    ones, ones between neighbours, next to a power of two (a carry into the exponent),
    float16 subnormals and values below them, float32 subnormals."""
    gen = torch.Generator().manual_seed(0)
    values = [1.0, 1.0 + 2**-9, 1.0 + 2**-20, 3.14159265, 0.1, 1e-3, 2.0 - 2**-20, 0.999999,
              1234.567, 65000.0, 6e-5, 3e-6, 2**-24 + 2**-30, 1e-8, 3e-10, 1e-30, 1e-40,
              2.5e38]  # fmt: skip
    values += (torch.randn(24, generator=gen) * torch.logspace(-6, 4, 24)).tolist()
    x = torch.tensor(values, dtype=torch.float32)
    return torch.cat([x, -x])


def enumerate_rounding(x: float, dtype: torch.dtype, n_bits: int) -> torch.Tensor:
    """stochastic_round(x) for every value of the low ``n_bits`` random bits (the bits it
    reads), as float64, in pieces of 2**20."""
    results = []
    for start in range(0, 2**n_bits, 2**20):
        bits = torch.arange(start, min(start + 2**20, 2**n_bits), dtype=torch.int64)
        xs = torch.full(bits.shape, x, dtype=torch.float32)
        results.append(stochastic_round(xs, dtype, bits).double())
    return torch.cat(results)


def bits_read(x: float, dtype: torch.dtype) -> int:
    """How many low random bits stochastic_round reads for ``x``: 16 for bfloat16; for
    float16 the float32 bits below its grid (13 in its normal range), 23 below 2**-24."""
    if dtype == torch.bfloat16:
        return 16
    exponent = (torch.tensor(x).view(torch.int32).item() >> 23) & 0xFF
    return 23 if exponent < 103 else min(23, max(13, 126 - exponent))


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_stochastic_rounding_is_exactly_unbiased_over_every_random_bit_pattern(dtype):
    """E[sr(x)] = x exactly: the mean over all 2**k patterns of the k bits the rounding
    reads (float64, exact for these sums) equals x, and each result is one of x's two
    neighbours. float16 below 2**-24 compares 23 bits with |x| 2**24: exact where |x| is
    a multiple of 2**-47, else low by at most min(|x|, 2**-47)."""
    info = torch.finfo(dtype)
    for x in float32_inputs().tolist():
        if abs(x) > info.max:
            continue  # beyond the dtype's range (bfloat16 covers float32's)
        results = enumerate_rounding(x, dtype, bits_read(x, dtype))
        expected = torch.tensor(x, dtype=torch.float32).double()
        gap = ulp(expected, dtype)
        assert ((results - expected).abs() <= gap).all(), x
        assert results.unique().numel() <= 2, x
        exact = dtype == torch.bfloat16 or abs(x) >= 2**-24 or (x * 2**47) % 1 == 0
        if exact:
            assert results.mean() == expected, (x, results.mean().item())
        else:
            assert 0 <= expected.abs() - results.mean().abs() <= min(abs(x), 2**-47), x


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_stochastic_rounding_keeps_representable_values_infinities_and_nans(dtype):
    exact = torch.tensor([0.0, -0.0, 1.0, -2.5, 0.5, float("inf"), -float("inf")]).to(dtype)
    bits = random_bits(0, exact.numel(), 1, 2, "cpu")
    assert torch.equal(stochastic_round(exact.float(), dtype, bits), exact)
    nan = torch.full((8,), float("nan"))
    assert stochastic_round(nan, dtype, random_bits(0, 8, 1, 2, "cpu")).isnan().all()


def test_random_bits_are_a_reproducible_uniform_hash():
    """The same on a tensor and on Python ints (eager, compiled and every device compute
    the same integers); about uniform; other keys give other bits, not a shifted copy."""
    values = [0, 1, 2**31, 2**32 - 1, 123456789]
    assert mix32(torch.tensor(values)).tolist() == [mix32(v) for v in values]
    k1, k2 = keys(seed=0, salt=salt(0, 0), step=1)
    bits = random_bits(0, 2**16, k1, k2, "cpu")
    assert torch.equal(bits, random_bits(0, 2**16, k1, k2, "cpu"))
    assert torch.equal(bits[100:200], random_bits(100, 100, k1, k2, "cpu"))
    assert bits.min() >= 0 and bits.max() < 2**32
    low = (bits & 0xFFFF).double()
    # mean of 2**16 uniform 16-bit integers: sd 2**16 / sqrt(12 * 2**16) ~ 74
    assert abs(low.mean().item() - (2**16 - 1) / 2) < 5 * 74
    counts = torch.bincount((bits >> 28).long(), minlength=16).double()  # top 4 bits
    chi2 = ((counts - 2**12) ** 2 / 2**12).sum().item()
    assert chi2 < 50  # 15 degrees of freedom: P(chi2 > 50) < 1e-5
    other = random_bits(0, 2**16, *keys(seed=0, salt=salt(0, 0), step=2), "cpu")
    assert (other == bits).float().mean() < 1e-3
    assert not torch.equal(other[1:], bits[:-1])
    assert not torch.equal(bits, random_bits(0, 2**16, *keys(1, salt(0, 0), 1), "cpu"))
    assert not torch.equal(bits, random_bits(0, 2**16, *keys(0, salt(0, 1), 1), "cpu"))


# -- the problem of the issue ---------------------------------------------------------------

STEPS = 2000


def regression(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 64, generator=gen)
    return x, x @ torch.randn(64, generator=gen)


def train_regression(dtype, precision="plain", lr=1e-3, steps=STEPS, library=minioptim):
    """64 weights at 1.0, full-batch AdamW (weight decay 0): the loss after ``steps``,
    computed in float32 from the weights (a bfloat16 model computes in float32, as under
    autocast; the gradient reaches the weights in their dtype)."""
    x, y = regression()
    w = torch.ones(64, dtype=dtype, requires_grad=True)
    if library is torch.optim:
        optimizer = torch.optim.AdamW([w], lr=lr, weight_decay=0.0, foreach=False)
    else:
        optimizer = minioptim.AdamW([w], lr=lr, weight_decay=0.0, precision=precision)
    for _ in range(steps):
        optimizer.zero_grad()
        (x @ w.float() - y).square().mean().backward()
        optimizer.step()
    with torch.no_grad():
        return (x @ w.float() - y).square().mean().item(), w


@pytest.fixture(scope="module")
def float32_loss():
    return train_regression(torch.float32, library=torch.optim)[0]


def test_plain_bfloat16_adamw_never_moves_a_weight(float32_loss):
    """lr * |m / sqrt(v)| ~ 1e-3 < ulp(1.0) / 2 = 2**-8: every update rounds away, in
    torch.optim and minioptim alike, while float32 reduces the loss 15-fold."""
    start = (regression()[0].sum(1) - regression()[1]).square().mean().item()
    for library in (torch.optim, minioptim):
        loss, w = train_regression(torch.bfloat16, library=library)
        assert torch.all(w == 1.0)
        assert loss == pytest.approx(start, rel=1e-6)
    assert float32_loss < start / 10


@pytest.mark.parametrize(
    "precision, factor",
    [
        ("master", 1.01),  # float32 iterates, gradients at the rounded weights
        ("stochastic", 1.5),
        ("kahan", 1.5),
        (Precision("stochastic", state_dtype=torch.float32), 1.05),
        (Precision("kahan", state_dtype=torch.float32), 1.01),
    ],
    ids=["master", "stochastic", "kahan", "stochastic-fp32-state", "kahan-fp32-state"],
)
def test_precision_modes_reach_the_float32_loss(precision, factor, float32_loss):
    """Each mode ends within ``factor`` of float32's loss, either way. With bfloat16 state
    (the default of stochastic and kahan) Adam's second moment rounds low, which makes the
    steps larger: those two end below float32's loss (about 0.7 of it)."""
    loss, _ = train_regression(torch.bfloat16, precision)
    assert float32_loss / factor < loss < float32_loss * factor


def test_kahan_follows_the_float32_trajectory_within_its_bound():
    """With the gradients fixed (no feedback from the weights), SGD's float32 iterate q and
    Kahan's p + c differ by at most the compensation's rounding, u |c| <= u ulp(p) / 2 per
    step (u = 2**-8, bfloat16's unit roundoff), plus float32 rounding of w = p + c and of
    the update (2 * 2**-24 |q| per step): the bound is asserted at every step, and p is
    within half an ulp plus that of q. Plain bfloat16 drifts far beyond it."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(4096, generator=gen)
    grads = 1 + torch.randn(STEPS // 4, 4096, generator=gen)  # a drift of 500 lr
    low = start.bfloat16()
    p = low.clone().requires_grad_()
    plain = low.clone().requires_grad_()
    q = low.float().requires_grad_()
    lr = 1e-4  # updates of about 1e-4: most below half an ulp of p
    ours = minioptim.SGD([p], lr=lr, precision="kahan")
    lost = minioptim.SGD([plain], lr=lr)
    reference = torch.optim.SGD([q], lr=lr, foreach=False)
    bound = torch.zeros(4096, dtype=torch.float64)
    for g in grads:
        p.grad, plain.grad, q.grad = g.bfloat16(), g.bfloat16(), g.bfloat16().float()
        ours.step(), lost.step(), reference.step()
        c = ours.state[p][COMPENSATION].double()
        bound += 2**-8 * ulp(p.detach(), torch.bfloat16) / 2 + 2 * 2**-24 * q.detach().abs()
        error = (p.detach().double() + c - q.detach().double()).abs()
        assert (error <= bound).all()
    assert ((p.double() - q.double()).abs() <= ulp(p, torch.bfloat16) / 2 + bound).all()
    drift = (plain.double() - q.double()).abs().max() / ulp(q, torch.bfloat16).max()
    assert drift > 1  # plain bfloat16 lost whole ulps


# -- every optimizer, every mode -----------------------------------------------------------


class Momentum(FusedOptimizer):
    """A student's rule (FusedOptimizer's docstring example): it knows nothing of precision."""

    def __init__(self, params, lr=0.05, beta=0.9, impl="reference", precision="plain"):
        super().__init__(params, dict(lr=lr, beta=beta), impl=impl, precision=precision)

    def state_names(self, group):
        return ("velocity",)

    def update(self, group, param, grad, state, step):
        v = state["velocity"]
        v.mul_(group["beta"]).add_(grad)
        param.add_(v, alpha=-group["lr"])


class StudentCase:
    id = name = "student-momentum"
    tensors = staticmethod(make_tensors)

    @staticmethod
    def ours(params, impl="reference", **options):
        impl = "reference" if impl == "fast" else impl  # the student wrote no fast path
        return Momentum(params, impl=impl, **options)

    @staticmethod
    def theirs(params):  # the same rule in torch.optim: SGD with momentum, no dampening
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, foreach=False)


ALL_CASES = [*CASES, StudentCase]
IMPLS = ["reference", "fast"]


def twins(case, low, impl, precision, steps=6, tensors=None):
    """The case's optimizer on ``low`` parameters in ``precision``, and the same optimizer
    on float32 copies, stepped side by side with the same gradients (drawn in float32,
    rounded to ``low``; the float32 twin gets the rounded values)."""
    tensors = case.tensors(torch.float32) if tensors is None else tensors
    half = leaf_copies([t.to(low) for t in tensors])
    full = leaf_copies([t.to(low).float() for t in tensors])
    ours, theirs = case.ours(half, impl, precision=precision), case.ours(full, impl)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p, q in zip(half, full, strict=True):
            g = torch.randn(p.shape, generator=gen).to(low)
            p.grad, q.grad = g, g.float()
        ours.step()
        theirs.step()
    return half, full, ours, theirs


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("low", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_master_weights_are_the_float32_iterates_and_parameters_their_rounding(case, low, impl):
    """Bit for bit: master weights and state equal the float32 optimizer's (same class,
    same path), and each parameter is its master weight rounded to nearest."""
    half, full, ours, theirs = twins(case, low, impl, "master")
    for p, q in zip(half, full, strict=True):
        entry = ours.state[p]
        assert p.dtype == low and entry[MASTER].dtype == torch.float32
        assert torch.equal(entry[MASTER], q)
        assert torch.equal(p, q.to(low))
        for key, value in theirs.state[q].items():
            assert torch.equal(entry[key], value), key


@pytest.mark.parametrize("low", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("case", [c for c in ALL_CASES if getattr(c, "torch_format", True)],
                         ids=lambda c: c.id)  # fmt: skip
def test_master_weights_equal_torch_optim_in_float32(case, low):
    """The independent reference: torch.optim's for-loop in float32 on the same gradients."""
    tensors = case.tensors(torch.float32)
    half, _, ours, _ = twins(case, low, "reference", "master", tensors=tensors)
    reference = leaf_copies([t.to(low).float() for t in tensors])
    theirs = case.theirs(reference)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        for q in reference:
            q.grad = torch.randn(q.shape, generator=gen).to(low).float()
        theirs.step()
    for p, q in zip(half, reference, strict=True):
        assert torch.equal(ours.state[p][MASTER], q)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("low", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_kahan_parameters_plus_compensation_follow_float32(case, low, impl):
    """With float32 state, p + c is within the bound of the float32 run: per step, the
    compensation's rounding, u ulp(q) / 2 (u = 2**-8 in bfloat16, 2**-11 in float16) or
    half the smallest subnormal where c is subnormal (2**-25 in float16: a compensation
    below 2**-14 has an absolute precision of 2**-24), and float32's 2**-24 |q| twice;
    doubled for the feedback of weight decay. p is within half an ulp of p + c."""
    precision = Precision("kahan", state_dtype=torch.float32)
    steps = 6
    half, full, ours, _ = twins(case, low, impl, precision, steps=steps)
    info = torch.finfo(low)
    u = info.eps / 2
    for p, q in zip(half, full, strict=True):
        c = ours.state[p][COMPENSATION]
        assert c.dtype == low
        total = p.double() + c.double()
        per_step = u * ulp(q, low) / 2 + info.tiny * info.eps / 2 + 2 * 2**-24 * q.double().abs()
        bound = 2 * steps * per_step
        assert ((total - q.double()).abs() <= bound).all()
        assert ((p.double() - total).abs() <= ulp(p, low) / 2).all()


def big_tensors(case) -> list[torch.Tensor]:
    """Enough elements for the mean of the rounding errors to be measured."""
    gen = torch.Generator().manual_seed(2)
    if case.name == "Muon":
        return [torch.randn(64, 64, generator=gen) for _ in range(4)]
    return [torch.randn(16384, generator=gen), torch.randn(64, 64, generator=gen)]


@pytest.mark.parametrize("low", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_stochastic_rounding_step_is_unbiased(case, low):
    """One step from the same start, with float32 state: the float32 optimizer's result w
    is what stochastic rounding rounds; each parameter is one of w's neighbours, and the
    mean rounding error over ~20,000 elements is within 5 standard errors (the error is
    below one ulp, so its standard deviation is below half an ulp) of 0."""
    precision = Precision("stochastic", state_dtype=torch.float32)
    half, full, _, _ = twins(case, low, "reference", precision, steps=1, tensors=big_tensors(case))
    errors = []
    for p, w in zip(half, full, strict=True):
        gap = ulp(w, low)
        error = (p.double() - w.double()) / gap
        assert (error.abs() < 1).all()
        errors.append(error.flatten())
    errors = torch.cat(errors)
    assert errors.mean().abs() < 5 * 0.5 / math.sqrt(errors.numel())
    assert (errors != 0).float().mean() > 0.5  # the updates were below the gaps: rounded


def test_stochastic_rounding_draws_the_documented_bits():
    """SGD's step in stochastic mode is stochastic_round(p - lr g) with the bits of
    random_bits(element, keys(seed, salt(group, bucket), step)): the wiring, checked by
    recomputing it; a second bucket (another group) draws other bits."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(1000, generator=gen).bfloat16().requires_grad_()
    b = torch.randn(500, generator=gen).bfloat16().requires_grad_()
    start = [a.detach().clone(), b.detach().clone()]
    seed = 12345
    optimizer = minioptim.SGD([{"params": [a]}, {"params": [b]}], lr=1e-3,
                              precision=Precision("stochastic", seed=seed))  # fmt: skip
    for step in (1, 2):
        grads = [torch.randn(t.shape, generator=gen).bfloat16() for t in (a, b)]
        a.grad, b.grad = grads
        optimizer.step()
        for group, (p, p0, g) in enumerate(zip((a, b), start, grads, strict=True)):
            w = p0.float() - 1e-3 * g.float()
            bits = random_bits(0, w.numel(), *keys(seed, salt(group, 0), step), "cpu")
            assert torch.equal(p.detach(), stochastic_round(w, torch.bfloat16, bits))
        start = [a.detach().clone(), b.detach().clone()]


def test_seeds_reproduce_and_differ():
    def run(seed):
        w = torch.full((256,), 1.0, dtype=torch.bfloat16, requires_grad=True)
        optimizer = minioptim.Adam([w], lr=1e-3, precision=Precision("stochastic", seed=seed))
        for _ in range(5):
            w.grad = torch.linspace(-1, 1, 256).bfloat16()
            optimizer.step()
        return w.detach().clone()

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_every_optimizer_in_every_mode_trains_half_precision_parameters(case, impl, mode):
    """Parameters stay bfloat16 and move; this mode's state (and only it) is kept, in its
    dtype; a float32 parameter in the same optimizer is updated exactly as without the
    mode (float32 buckets ignore it)."""
    half, full, ours, theirs = twins(case, torch.bfloat16, impl, mode, steps=3)
    start = [t.to(torch.bfloat16) for t in case.tensors(torch.float32)]
    moved = sum(not torch.equal(p, s) for p, s in zip(half, start, strict=True))
    assert moved >= len(half) - 1  # (a 0-d parameter may not move in 3 small steps)
    for p in half:
        entry = ours.state[p]
        assert p.dtype == torch.bfloat16
        assert (MASTER in entry) == (mode == "master")
        assert (COMPENSATION in entry) == (mode == "kahan")
        for key, value in entry.items():
            if key == MASTER or (mode == "master" and key != "step"):
                assert value.dtype == torch.float32, key
            elif key != "step":
                assert value.dtype == torch.bfloat16, key
    # float32 parameters: bit for bit the plain optimizer's
    singles = leaf_copies(case.tensors(torch.float32))
    plain = leaf_copies(case.tensors(torch.float32))
    a, b = case.ours(singles, impl, precision=mode), case.ours(plain, impl)
    for _ in range(2):
        for p, q in zip(singles, plain, strict=True):
            p.grad = q.grad = torch.ones_like(p)
        a.step(), b.step()
    assert all(torch.equal(p, q) for p, q in zip(singles, plain, strict=True))
    assert all(MASTER not in a.state[p] and COMPENSATION not in a.state[p] for p in singles)


COMPILED = [BY_NAME["AdamW"], StudentCase]


@pytest.mark.parametrize("mode", ["master", "stochastic", "kahan"])
@pytest.mark.parametrize("case", COMPILED, ids=lambda c: c.id)
def test_compiled_rule_in_every_mode_matches_the_reference_path(case, mode):
    """impl='compiled' compiles the casts, the rule and the rounding into one function
    (precision.fused; one loop, C++ here, Triton on a GPU). Inductor fuses multiply-adds,
    so the float32 result may differ in its last bit, and a rounding near a midpoint (or
    a random threshold) may then go the other way: parameters within an ulp of the
    reference path's (Kahan: p + c to float32 rounding); master weights bit for bit
    those of the float32 run compiled the same way; stochastic rounding draws the same
    bits (most parameters equal)."""
    half, full, ours, theirs = twins(case, torch.bfloat16, "compiled", mode, steps=4)
    reference, _, other, _ = twins(case, torch.bfloat16, "reference", mode, steps=4)
    for p, r in zip(half, reference, strict=True):
        gap = torch.maximum(ulp(p, torch.bfloat16), ulp(r, torch.bfloat16))
        assert ((p.double() - r.double()).abs() <= gap).all()
        if mode == "kahan":
            total = p.double() + ours.state[p][COMPENSATION].double()
            expected = r.double() + other.state[r][COMPENSATION].double()
            torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
        if mode == "stochastic" and p.numel() > 4:
            assert (p == r).float().mean() > 0.5
    if mode == "master":
        for p, q in zip(half, full, strict=True):
            assert torch.equal(ours.state[p][MASTER], q)


def test_compiled_stochastic_rounding_happens_inside_the_generated_function():
    """The compiled path calls precision.fused's function, compiled: the rounding is
    part of the compiled graph (no float32 working copy of the parameters is made
    outside it), and it compiles without falling back to eager."""
    import warnings

    from minioptim.functional import adam_
    from minioptim.precision import compiled_fused

    w = torch.linspace(-1, 1, 1000).bfloat16().requires_grad_()
    optimizer = minioptim.Adam([w], lr=1e-3, impl="compiled", precision="stochastic")
    w.grad = torch.ones_like(w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager would warn
        optimizer.step()
    names = ("exp_avg", "exp_avg_sq")
    rule = compiled_fused(adam_, mode="stochastic", names=names, method=False)
    assert rule.attempts, "the fused rule fell back to eager"


def test_elementwise_rules_run_in_pieces_with_the_same_numbers(monkeypatch):
    """A built-in elementwise rule runs on float32 copies of pieces of the run (small
    working memory); the pieces give the numbers of one call."""
    from minioptim import precision

    gen = torch.Generator().manual_seed(4)
    start = torch.randn(5000, generator=gen).bfloat16()
    grads = torch.randn(3, 5000, generator=gen).bfloat16()
    results = []
    for piece in (2**20, 1024):
        monkeypatch.setattr(precision, "chunk_size", lambda device, piece=piece: piece)
        for mode in ("master", "stochastic", "kahan"):
            w = start.clone().requires_grad_()
            optimizer = minioptim.Adam([w], lr=1e-3, precision=mode)
            for g in grads:
                w.grad = g
                optimizer.step()
            results.append(w.detach())
    for whole, pieces in zip(results[:3], results[3:], strict=True):
        assert torch.equal(whole, pieces)


# -- checkpoints -------------------------------------------------------------------------------


def model(dtype=torch.bfloat16):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).to(
        dtype
    )


def train(net, optimizer, steps, start=0):
    for step in range(start, start + steps):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(8, 5, generator=gen)
        optimizer.zero_grad()
        loss = torch.func.functional_call(
            net, {k: v.float() for k, v in net.named_parameters()}, (x,)
        )
        loss.square().mean().backward()
        optimizer.step()


def save_and_load(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


PRECISIONS = {
    "master": "master",
    "stochastic": Precision("stochastic", seed=3),
    "kahan": "kahan",
    "kahan-fp32-state": Precision("kahan", state_dtype=torch.float32),
}


@pytest.mark.parametrize("model_first", [True, False], ids=["model-first", "optimizer-first"])
@pytest.mark.parametrize("precision", PRECISIONS.values(), ids=PRECISIONS.keys())
def test_checkpoint_round_trip_continues_bit_identically(precision, model_first):
    """Save after 4 steps, load into a fresh model and optimizer (through a file, with
    weights_only=True), continue 4 steps: bit for bit the uninterrupted run, whichever is
    loaded first. The fresh optimizer has another seed: the checkpoint's wins."""
    net = model()
    optimizer = minioptim.AdamW(net.parameters(), lr=1e-3, precision=precision)
    train(net, optimizer, 4)
    saved_model, saved_optimizer = save_and_load((net.state_dict(), optimizer.state_dict()))
    entry = saved_optimizer["state"][0]
    if optimizer.precision.mode == "master":
        assert entry[MASTER].dtype == torch.float32 and entry["exp_avg"].dtype == torch.float32
    train(net, optimizer, 4, start=4)

    restored = model()
    with torch.no_grad():
        for p in restored.parameters():
            p.add_(1.0)  # not the saved values
    mode, state_dtype = optimizer.precision.mode, optimizer.precision.state_dtype
    other = Precision(mode, seed=99, state_dtype=state_dtype)
    resumed = minioptim.AdamW(restored.parameters(), lr=1e-3, precision=other)
    train(restored, resumed, 1, start=100)  # state that the checkpoint must replace
    if model_first:
        restored.load_state_dict(saved_model)
        resumed.load_state_dict(saved_optimizer)
    else:
        resumed.load_state_dict(saved_optimizer)
        restored.load_state_dict(saved_model)
    train(restored, resumed, 4, start=4)
    for p, q in zip(net.parameters(), restored.parameters(), strict=True):
        assert torch.equal(p, q)
        for key, value in optimizer.state[p].items():
            assert torch.equal(value, resumed.state[q][key]), key


def test_torch_optim_loads_a_master_checkpoint_and_a_master_optimizer_loads_torchs():
    """torch.optim.AdamW loads a master-weights checkpoint (its extra entry is ignored,
    the float32 moments cast to bfloat16) and continues as it would from its own state;
    minioptim in master mode loads torch's checkpoint and starts the master weights at the
    parameters (documented), the moments exactly."""
    net = model()
    ours = minioptim.AdamW(net.parameters(), lr=1e-3, precision="master")
    train(net, ours, 3)
    theirs_net = copy.deepcopy(net)
    theirs = torch.optim.AdamW(theirs_net.parameters(), lr=1e-3, foreach=False)
    theirs.load_state_dict(save_and_load(ours.state_dict()))
    for p, q in zip(net.parameters(), theirs_net.parameters(), strict=True):
        assert torch.equal(theirs.state[q]["exp_avg"], ours.state[p]["exp_avg"].bfloat16())
    train(theirs_net, theirs, 2, start=3)  # runs

    # torch's bfloat16 checkpoint into master mode
    saved = save_and_load(theirs.state_dict())
    fresh_net = copy.deepcopy(theirs_net)
    fresh = minioptim.AdamW(fresh_net.parameters(), lr=1e-3, precision="master")
    fresh.load_state_dict(saved)
    for p, q in zip(fresh_net.parameters(), theirs_net.parameters(), strict=True):
        entry = fresh.state[p]
        assert torch.equal(entry[MASTER], q.float())
        assert entry["exp_avg"].dtype == torch.float32
        assert torch.equal(entry["exp_avg"], theirs.state[q]["exp_avg"].float())
    train(fresh_net, fresh, 2, start=5)


def test_a_checkpoint_of_another_mode_loads_and_drops_what_this_mode_does_not_keep():
    net = model()
    master = minioptim.AdamW(net.parameters(), lr=1e-3, precision="master")
    train(net, master, 2)
    saved = master.state_dict()
    for precision in ("plain", "stochastic", "kahan"):
        other_net = copy.deepcopy(net)
        other = minioptim.AdamW(other_net.parameters(), lr=1e-3, precision=precision)
        other.load_state_dict(saved)
        entry = other.state_dict()["state"][0]
        assert MASTER not in entry
        assert (COMPENSATION in entry) == (precision == "kahan")
        if COMPENSATION in entry:
            assert not entry[COMPENSATION].any()  # starts at zero
        train(other_net, other, 2, start=2)


def test_master_weights_follow_a_parameter_written_from_outside():
    """A parameter written in place (model.load_state_dict, p.copy_) or replaced (p.data =)
    after a step: its new values win over the master weights; untouched ones keep them."""
    a = torch.ones(4, dtype=torch.bfloat16, requires_grad=True)
    b = torch.ones(4, dtype=torch.bfloat16, requires_grad=True)
    optimizer = minioptim.SGD([a, b], lr=1e-3, precision="master")
    for p in (a, b):
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert torch.all(a == 1.0) and torch.all(optimizer.state[a][MASTER] == 1 - 1e-3 * 1.0)
    with torch.no_grad():
        a.copy_(torch.full((4,), 3.0))
    optimizer.step()
    assert torch.equal(optimizer.state[a][MASTER], torch.full((4,), 3.0) - 1e-3)
    assert torch.all(optimizer.state[b][MASTER] == torch.tensor(1.0) - 2e-3)
    b.data = torch.full((4,), -2.0, dtype=torch.bfloat16)
    optimizer.step()
    assert torch.equal(optimizer.state[b][MASTER], torch.full((4,), -2.0) - 1e-3)


def test_state_edits_restart_or_keep_the_master_weights():
    """del state[p]: the parameter starts afresh, master weights from its values; an entry
    replaced without them (as ZeroRedundancyOptimizer writes entries) keeps them."""
    a = torch.ones(4, dtype=torch.bfloat16, requires_grad=True)
    optimizer = minioptim.Adam([a], lr=1e-3, precision="master")
    a.grad = torch.ones_like(a)
    optimizer.step()
    kept = optimizer.state[a][MASTER].clone()
    assert torch.all(a == 1.0) and torch.all(kept < 1.0)  # below half an ulp of 1.0
    optimizer.state[a] = {k: v.clone() for k, v in optimizer.state[a].items() if k != MASTER}
    optimizer.step()
    assert torch.all(optimizer.state[a][MASTER] < kept)  # continued from the kept weights
    restart = a.detach().float().requires_grad_()  # float32 Adam's first step from a
    del optimizer.state[a]
    optimizer.step()
    assert torch.equal(optimizer.state[a]["step"], torch.tensor(1.0))
    reference = torch.optim.Adam([restart], lr=1e-3, foreach=False)
    restart.grad = torch.ones(4)
    reference.step()
    assert torch.equal(optimizer.state[a][MASTER], restart.detach())


def test_deepcopy_keeps_the_mode_and_continues_identically():
    """copy.deepcopy of a model with its optimizer (one memo: the copy optimizes the
    copied parameters) continues exactly as the original, master weights included."""
    net = model()
    optimizer = minioptim.AdamW(net.parameters(), lr=1e-3, precision="master")
    train(net, optimizer, 2)
    net_copy, optimizer_copy = copy.deepcopy((net, optimizer))
    assert optimizer_copy.precision == optimizer.precision
    train(net, optimizer, 2, start=2)
    train(net_copy, optimizer_copy, 2, start=2)
    for p, q in zip(net.parameters(), net_copy.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(optimizer.state[p][MASTER], optimizer_copy.state[q][MASTER])


# -- validation and memory ----------------------------------------------------------------


def test_invalid_precision_raises_clearly():
    params = [torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)]
    with pytest.raises(ValueError, match="precision must be one of"):
        minioptim.Adam(params, precision="fp32-master")
    with pytest.raises(TypeError, match="precision must be a mode's name"):
        minioptim.Adam(params, precision=True)
    with pytest.raises(ValueError, match="seed"):
        Precision("stochastic", seed=-1)
    with pytest.raises(ValueError, match="state_dtype"):
        Precision("master", state_dtype=torch.float64)
    with pytest.raises(ValueError, match="plain"):
        Precision("plain", state_dtype=torch.float32)

    class Clash(Momentum):
        def state_names(self, group):
            return (MASTER,)

    optimizer = Clash(params, precision="master")
    params[0].grad = torch.ones(3, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="reserved"):
        optimizer.step()


@pytest.mark.parametrize("mode", MODES)
def test_bytes_per_parameter_by_kind_match_the_tensors(mode):
    """memory.bytes_by_kind counts what the buckets hold; an independent sum of
    tensor.nbytes over parameters, gradients and state entries agrees, and the totals
    per parameter are the table's: Adam in bfloat16 takes 8 bytes plain, 16 with master
    weights (2 + 2 + 4 + 2 x 4), 8 with stochastic rounding, 10 with Kahan."""
    tensors = [t.bfloat16() for t in matrices(torch.float32)]
    params = leaf_copies(tensors)
    optimizer = minioptim.Adam(params, lr=1e-3, precision=mode)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    kinds = memory.bytes_by_kind(optimizer)
    n = sum(p.numel() for p in params)
    entries = sum(v.nbytes for p in params for k, v in optimizer.state[p].items() if k != "step")
    steps = sum(v.nbytes for p in params for k, v in optimizer.state[p].items() if k == "step")
    independent = sum(p.nbytes + p.grad.nbytes for p in params) + entries + steps
    assert sum(kinds.values()) == independent
    expected = {"plain": 8, "master": 16, "stochastic": 8, "kahan": 10}[mode]
    per_param = (sum(kinds.values()) - steps) / n
    assert per_param == expected
    assert kinds["master"] == (4 * n if mode == "master" else 2 * n if mode == "kahan" else 0)


def test_memory_suite_reports_every_optimizer_in_every_mode():
    """The bench's table: one record per optimizer and mode; on the CPU each measured total
    (a sum of tensor.nbytes) equals the accounted one; the elementwise optimizers' bytes
    per parameter (step counters aside) are 2 + 2 + state + what the mode adds."""
    shapes = bench_cases.scaled(bench_cases.llm_shapes(layers=2), 1e-3)
    records = memory.precision_records(shapes)
    assert len(records) == len(memory.TABLE_OPTIMIZERS) * len(memory.PRECISIONS)
    state = {"sgd": 1, "adam": 2, "lion": 1, "muon": 1}  # tensors per parameter
    for r in records:
        assert r["measured_bpp"] == pytest.approx(r["total_bpp"], rel=1e-12)
        if r["optimizer"] in state:
            width = 4 if r["dtype"] == "float32" or r["precision"] == "master" else 2
            extra = {"master": 4, "kahan": 2}.get(r["precision"], 0)
            item = 4 if r["dtype"] == "float32" else 2
            expected = 2 * item + state[r["optimizer"]] * width + extra
            assert r["total_bpp"] == pytest.approx(expected, abs=0.1), r
    adafactor = {(r["dtype"], r["precision"]): r for r in records if r["optimizer"] == "adafactor"}
    for (_, mode), r in adafactor.items():  # minioptim.Adafactor, measured in every mode
        assert r["master_bpp"] == {"master": 4, "kahan": 2}.get(mode, 0)
    # master weights and float32 state: float32's bytes, whatever the factored state's size
    float32 = adafactor["float32", "plain"]["total_bpp"]
    assert adafactor["bfloat16", "master"]["total_bpp"] == pytest.approx(float32, rel=1e-12)
    table = memory.precision_markdown(records)
    assert "| adam | 16.0 | 8.0 | 16.0 | 8.0 | 10.0 |" in table
