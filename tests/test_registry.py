"""Every optimizer of the registry (cases.py) against its independent reference.

Each test runs minioptim and the reference side by side on the same parameters and
gradients for many steps and compares parameters and state after every step, with the
case's measured tolerance (bit-identical where the paths repeat the same operations):
in float32 and float64, in half precision, with in-place and fresh gradients, with param
groups and a scheduler, through checkpoints with unequal per-parameter step counts both
ways, with tensor hyper-parameters, and on buffers larger than a fast-path block.
"""

import inspect
import io

import pytest
import torch
from cases import CASES, EXACT
from conftest import TOLERANCES

import minioptim
from minioptim.testing import assert_same_trajectory, leaf_copies, random_gradient

STEPS = 12
by_id = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


@by_id
@pytest.mark.parametrize("gradients", ["in_place", "fresh"])
def test_matches_reference(case, impl, dtype, gradients):
    """``fresh`` sets gradients to None and assigns new tensors each step, as HF Trainer,
    accelerate and ``model.zero_grad()`` do: the optimizer must copy them in and re-bind."""
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl),
        case.theirs,
        case.tensors(dtype),
        steps=STEPS,
        gradients=gradients,
        **case.tolerance(impl, dtype),
    )


def with_scheduler(optimizer):
    """Two param groups (the second at a tenth of the learning rate) and an LR schedule
    stepped after every optimizer step, as training loops do."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.8**epoch)
    original = optimizer.step

    def step():
        original()
        scheduler.step()

    optimizer.step = step
    return optimizer


def two_groups(params, lr):
    return [dict(params=params[:2]), dict(params=params[2:], lr=lr / 10)]


@by_id
@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_param_groups_and_a_scheduler(case, impl):
    lr = case.options["lr"]
    assert_same_trajectory(
        lambda ps: with_scheduler(case.ours(two_groups(ps, lr), impl)),
        lambda ps: with_scheduler(case.theirs(two_groups(ps, lr))),
        case.tensors(torch.float64),
        steps=STEPS,
        **case.tolerance(impl, torch.float64),
    )


def skipping_gradient(step, index, param, gen, count):
    """Parameter 0 gets no gradient on steps 1-3, parameter 1 none on odd steps and the
    last one none before step 7, so at the checkpoint (after step 6) the step counts are
    3, 3, 6, ..., 6, 0."""
    grad = random_gradient(step, index, param, gen)
    late = index == count - 1 and step <= 6
    if (index == 0 and step <= 3) or (index == 1 and step % 2 == 1) or late:
        return None
    return grad


def run(optimizer, params, steps, start, seed=0):
    gen = torch.Generator().manual_seed(seed + start)
    for step in range(start, start + steps):
        for index, p in enumerate(params):
            p.grad = skipping_gradient(step, index, p, gen, len(params))
        optimizer.step()


def checkpoint_tensors(case, dtype):
    """The case's tensors and two more of shapes already there: the buffer orders
    parameters by shape, so its order differs from the parameters' (state_dict's)."""
    return case.tensors(dtype) + case.tensors(dtype, seed=1)[:2]


def through_a_file(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_state_equal(ours, theirs, params_ours, params_theirs, tolerance):
    for p, q in zip(params_ours, params_theirs, strict=True):
        mine = {k: v for k, v in ours.state.get(p, {}).items() if v is not None}
        reference = {k: v for k, v in theirs.state.get(q, {}).items() if v is not None}
        assert mine.keys() == reference.keys()
        for key, value in reference.items():
            exact = EXACT if key == "step" else tolerance
            torch.testing.assert_close(mine[key], value, **exact, msg=f"state[{key!r}]")


@by_id
def test_checkpoint_with_unequal_step_counts_resumes_like_the_reference(case, impl):
    """Save after parameters skipped different numbers of steps (one has none yet), load
    into a fresh optimizer, go on: state (step included) and parameters must follow the
    reference."""
    tensors = checkpoint_tensors(case, torch.float64)
    tolerance = case.tolerance(impl, torch.float64)
    ours_params, their_params = leaf_copies(tensors), leaf_copies(tensors)
    ours, theirs = case.ours(ours_params, impl), case.theirs(their_params)
    run(ours, ours_params, 6, start=1)
    run(theirs, their_params, 6, start=1)
    sources = {"ours": ours.state_dict()}
    if case.torch_format:
        sources["torch.optim"] = theirs.state_dict()
    for source, saved in sources.items():
        restored_params = [p.detach().clone().requires_grad_() for p in ours_params]
        restored = case.ours(restored_params, impl)
        restored.load_state_dict(through_a_file(saved))
        assert_state_equal(restored, theirs, restored_params, their_params, tolerance)
        continued = leaf_copies(their_params)
        reference = case.theirs(continued)
        reference.load_state_dict(theirs.state_dict())
        run(restored, restored_params, 6, start=7)
        run(reference, continued, 6, start=7)
        for p, q in zip(restored_params, continued, strict=True):
            torch.testing.assert_close(p, q, **tolerance, msg=f"resumed from {source}")
        assert_state_equal(restored, reference, restored_params, continued, tolerance)
    if case.torch_format:  # and torch.optim resumes from ours
        reference = case.theirs(leaf_copies(their_params))
        reference.load_state_dict(through_a_file(ours.state_dict()))
        assert_state_equal(
            ours, reference, ours_params, reference.param_groups[0]["params"], tolerance
        )


@by_id
def test_a_one_element_tensor_lr_works_as_in_torch(case, impl):
    lr = torch.tensor([case.options["lr"]])
    # torch.optim takes the tensor; the per-tensor definitions take its value as a number
    their_lr = lr if case.torch_format else lr.item()
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl, lr=lr),
        lambda ps: case.theirs(ps, lr=their_lr),
        case.tensors(torch.float32),
        steps=STEPS,
        **case.tolerance(impl, torch.float32),
    )
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        case.ours(leaf_copies(case.tensors(torch.float32)), impl, lr=torch.tensor([0.1, 0.2]))


def has_betas(case) -> bool:
    return "betas" in inspect.signature(getattr(minioptim, case.name)).parameters


# Only the optimizers that have betas, and the dtypes where the case has a measured bound
# (cases.py says why the others have none).
TENSOR_BETAS = [
    pytest.param(case, dtype, id=f"{case.id}-{str(dtype).removeprefix('torch.')}")
    for case in CASES
    if has_betas(case)
    for dtype in (torch.float64, torch.float16)
    if dtype == torch.float64 or case.half_reason(dtype) is None
]
HALF = [
    pytest.param(case, low, id=f"{case.id}-{str(low).removeprefix('torch.')}")
    for case in CASES
    for low in (torch.float16, torch.bfloat16)
    if case.half_reason(low) is None
]


@pytest.mark.parametrize("case, dtype", TENSOR_BETAS)
def test_tensor_betas_work_as_in_torch(case, impl, dtype):
    """1-element tensor betas (float32), as torch.optim accepts, on float64 and float16
    parameters (torch moves a tensor beta1 to the parameter's dtype for the first moment).

    In float64 torch's for-loop computes the bias corrections of float32 tensor betas in
    float32 (the reference path does the same: bit-identical); the fused kernels take the
    betas as Python floats and compute them in float64, so the fast path agrees to float32
    rounding (measured: 3.4e-10 relative)."""
    signature = inspect.signature(getattr(minioptim, case.name))
    betas = case.options.get("betas", signature.parameters["betas"].default)
    tensor_betas = tuple(torch.tensor([beta]) for beta in betas)
    their_betas = tensor_betas if case.torch_format else tuple(b.item() for b in tensor_betas)
    if dtype == torch.float64 and impl == "fast":
        tolerance = case.tolerance(impl, torch.float32)
    else:
        tolerance = case.tolerance(impl, dtype)
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl, betas=tensor_betas),
        lambda ps: case.theirs(ps, betas=their_betas),
        [t.to(dtype) for t in case.tensors(torch.float64)],
        steps=STEPS,
        **tolerance,
    )


@pytest.mark.parametrize("case, low", HALF)
def test_half_precision_matches_reference(case, impl, low):
    """Half-precision parameters, with the case's measured slack (cases.py): Adam, AdamW,
    SignSGD and Muon are bit-identical to their references, SGD within an ulp or two
    (half-precision arithmetic rounds differently in vectorized and scalar loops)."""
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl),
        case.theirs,
        [t.to(low) for t in case.tensors(torch.float32)],
        steps=STEPS,
        **case.tolerance(impl, low),
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "Muon"], ids=lambda c: c.id)
def test_fast_path_covers_buffers_larger_than_a_block(case):
    """The blocked fast paths (SignSGD, Lion) must update every element, including a
    partial last block; the fused kernels (SGD, Adam) take any size."""
    size = 2 * minioptim.functional.BLOCK + 123
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(size, generator=gen, dtype=torch.float64), torch.randn(17)]
    assert_same_trajectory(
        lambda ps: case.ours(ps, "fast"),
        case.theirs,
        [tensors[0], tensors[1].double()],
        steps=3,
        **case.tolerance("fast", torch.float64),
    )


def test_the_registry_covers_every_optimizer():
    import minioptim

    names = {c.name for c in CASES}
    assert names == {"SGD", "Adam", "AdamW", "SignSGD", "Lion", "Muon"}
    assert all(hasattr(minioptim, name) for name in names)
    assert TOLERANCES  # the fast tolerances come from conftest


def with_empty(tensors):
    """The case's parameters with zero-element ones among them: one between the others
    and one at the end (a run or a fast-path block of nothing)."""
    dtype = tensors[0].dtype
    empty = torch.zeros(0, 3, dtype=dtype)  # 2-d, so that Muon takes it too
    return [tensors[0], empty, *tensors[1:], empty.clone()]


@by_id
def test_zero_element_parameters_are_updated_like_the_others(case, impl):
    """torch.optim steps zero-element parameters (state, step counts); SignSGD's and
    Lion's fast paths used to raise "did not change param in place" on them."""
    assert_same_trajectory(
        lambda ps: case.ours(ps, impl),
        case.theirs,
        with_empty(case.tensors(torch.float64)),
        steps=4,
        **case.tolerance(impl, torch.float64),
    )


@by_id
def test_an_optimizer_of_zero_element_parameters_only_steps(case, impl):
    """A run of nothing but empty parameters: nothing can change, and nothing raises
    (SignSGD's and Lion's blocked fast paths ran no block and reported the rule wrong)."""
    params = [torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3, requires_grad=True)]
    optimizer = case.ours(params, impl)
    for _ in range(2):
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
    assert all(p.shape == (0, 3) for p in params)


def test_muon_refuses_matrices_without_columns_where_its_lr_scale_divides_by_zero():
    empty = torch.zeros(3, 0, requires_grad=True)
    with pytest.raises(ValueError, match="no columns"):
        minioptim.Muon([empty])
    minioptim.Muon([empty], adjust_lr_fn="match_rms_adamw")  # 0.2 sqrt(max(A, B)): defined
