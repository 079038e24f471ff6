"""The comparison harness (minioptim.testing): each of its promises, as a property.

``assert_same_trajectory`` is what minioptim's own tests and the course's grader judge
optimizers by, so a harness that accepts too much hides every bug it is used to find.
Each test here breaks one promise on purpose, with small scripted optimizers whose
parameters and state are set to chosen values, and checks that the harness notices (and
that it accepts what it promises to accept):

- parameters and state agree within ``rtol``/``atol`` as ``torch.testing.assert_close``
  reads them (|ours - reference| <= atol + rtol * |reference|): a difference slightly
  inside that bound passes, slightly outside fails, above and below the reference, for
  the parameters and for every state entry; ``tolerance`` replaces them per dtype, each
  parameter (and its state) at its own dtype;
- with ``compare_state`` (the default) a missing, extra or renamed state entry fails; a
  ``None`` entry counts as absent; ``step`` entries must be equal exactly;
- the error names the first step, the parameter and the state entry that differ;
- ``steps`` steps, gradients from ``gradient(step, index, param, generator)`` with the
  generator seeded by ``seed``; the same gradient values for both optimizers, each in its
  own tensor; ``None`` leaves a parameter without a gradient;
- ``gradients="in_place"`` writes into the existing ``p.grad``, ``"fresh"`` calls
  ``zero_grad(set_to_none=True)`` on both and assigns new tensors; other values raise;
- each optimizer gets its own trainable copies of the tensors, with their strides, and
  the tensors passed in are left alone.
"""

from __future__ import annotations

import functools

import pytest
import torch

from minioptim.testing import (
    assert_same_trajectory,
    leaf_copies,
    random_gradient,
    set_gradient,
)


def tensors(dtype=torch.float64) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [
        torch.randn(3, 2, generator=gen, dtype=dtype),
        torch.randn(4, generator=gen, dtype=dtype),
    ]


class Scripted(torch.optim.Optimizer):
    """SGD (p <- p - 0.1 g) that keeps ``state["buf"] = g`` and a float ``step`` per
    parameter, then lets ``script(step, index, p, state)`` change the parameter and its
    state. It records what the harness gave it: the gradient tensors at every step and
    the ``zero_grad`` calls."""

    def __init__(self, params, script=None):
        super().__init__(params, {})
        self.script = script
        self.count = 0
        self.grads: list[list[torch.Tensor | None]] = []  # the p.grad objects, per step
        self.values: list[list[torch.Tensor | None]] = []  # their values, per step
        self.zero_grads: list[bool] = []

    def zero_grad(self, set_to_none: bool = False) -> None:  # FusedOptimizer's default
        self.zero_grads.append(set_to_none)
        super().zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        self.count += 1
        params = self.param_groups[0]["params"]
        self.grads.append([p.grad for p in params])
        self.values.append([None if p.grad is None else p.grad.clone() for p in params])
        for index, p in enumerate(params):
            if p.grad is None:
                continue
            state = self.state[p]
            state["step"] = state.get("step", torch.tensor(0.0)) + 1
            state["buf"] = p.grad.clone()
            p.sub_(0.1 * p.grad)
            if self.script is not None:
                self.script(self.count, index, p, state)


def factory(script=None, log=None):
    """A factory of Scripted optimizers; ``log`` (a list) collects the instances."""

    def make(params):
        optimizer = Scripted(params, script)
        if log is not None:
            log.append(optimizer)
        return optimizer

    return make


def fill(value, at=None, entry=None):
    """A script that sets the parameter (or ``state[entry]``) to ``value`` at every step
    (``at``: only at that (step, index))."""

    def script(step, index, p, state):
        if at is not None and (step, index) != at:
            return
        target = p if entry is None else state[entry]
        target.fill_(value)

    return script


def compare(ours, theirs, **options):
    assert_same_trajectory(factory(ours), factory(theirs), tensors(), steps=3, **options)


# -- tolerances ---------------------------------------------------------------------------

RTOL, ATOL = 1e-3, 1e-6  # distinct enough that swapping them is visible


@pytest.mark.parametrize("entry", [None, "buf"], ids=["param", "state"])
@pytest.mark.parametrize("sign", [1, -1], ids=["above", "below"])
@pytest.mark.parametrize("reference", [0.0, 50.0], ids=["atol", "rtol"])
def test_a_difference_inside_the_tolerance_passes_and_outside_fails(reference, sign, entry):
    """|ours - reference| <= atol + rtol * |reference|, for parameters and state alike."""
    bound = ATOL + RTOL * abs(reference)
    theirs = fill(reference, entry=entry)
    compare(fill(reference + sign * 0.9 * bound, entry=entry), theirs, rtol=RTOL, atol=ATOL)
    with pytest.raises(AssertionError):
        compare(fill(reference + sign * 1.1 * bound, entry=entry), theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("entry", [None, "buf"], ids=["param", "state"])
def test_the_relative_tolerance_is_relative_to_the_reference(entry):
    """rtol scales |reference|, not |ours|: with rtol = 0.5 and a reference of 1, ours
    may be 0.55 (|ours| * rtol would be 0.275) but not 1.6 (that would allow 0.8)."""
    theirs = fill(1.0, entry=entry)
    compare(fill(0.55, entry=entry), theirs, rtol=0.5, atol=0)
    with pytest.raises(AssertionError):
        compare(fill(1.6, entry=entry), theirs, rtol=0.5, atol=0)


def test_the_default_tolerance_is_assert_closes():
    """None: torch.testing.assert_close's defaults for float64 (rtol 1e-7, atol 1e-7)."""
    compare(fill(1.0 + 1e-8), fill(1.0))
    with pytest.raises(AssertionError):
        compare(fill(1.0 + 1e-6), fill(1.0))


def two_dtypes():
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(3, generator=gen), torch.randn(2, 2, generator=gen, dtype=torch.float64)]


TIGHT, LOOSE = dict(rtol=0, atol=1e-9), dict(rtol=0, atol=1e-3)
# A difference of 7e-4 from 0.5 is inside LOOSE (and would not be with its rtol and atol
# swapped: 1e-3 * 0.5), and 1e-5 is outside TIGHT.
INSIDE_LOOSE, OUTSIDE_TIGHT = 7e-4, 1e-5


@pytest.mark.parametrize("entry", [None, "buf"], ids=["param", "state"])
@pytest.mark.parametrize("first", [torch.float32, torch.float64], ids=str)
def test_tolerance_per_dtype_applies_to_each_parameter_and_its_state(entry, first):
    """Each parameter, and its state, at its own dtype's tolerance; rtol/atol replaced."""
    params = two_dtypes()
    if params[0].dtype != first:
        params.reverse()

    def by_dtype(dtype):
        return dict(LOOSE if dtype == torch.float32 else TIGHT)

    def check(dtype, size):
        """A difference of size in the parameter of dtype (or its state) at step 1."""
        i = [p.dtype for p in params].index(dtype)
        ours, theirs = fill(0.5 + size, at=(1, i), entry=entry), fill(0.5, at=(1, i), entry=entry)
        assert_same_trajectory(
            factory(ours), factory(theirs), params, steps=2, rtol=0, atol=0, tolerance=by_dtype
        )

    check(torch.float32, INSIDE_LOOSE)
    where = f"parameter {[p.dtype for p in params].index(torch.float64)} "
    with pytest.raises(AssertionError, match=where):
        check(torch.float64, OUTSIDE_TIGHT)


# -- state entries ------------------------------------------------------------------------


def add_entry(name, value=0.0):
    def script(step, index, p, state):
        state[name] = None if value is None else torch.full_like(p, value)

    return script


def drop_entry(name):
    def script(step, index, p, state):
        del state[name]

    return script


def rename_entry(old, new):
    def script(step, index, p, state):
        state[new] = state.pop(old)

    return script


STATE_CHANGES = {
    "missing": drop_entry("buf"),
    "extra": add_entry("extra"),
    "renamed": rename_entry("buf", "buffer"),
}


@pytest.mark.parametrize("change", sorted(STATE_CHANGES))
@pytest.mark.parametrize("side", ["ours", "reference"])
def test_a_missing_extra_or_renamed_state_entry_fails(change, side):
    script = STATE_CHANGES[change]
    ours, theirs = (script, None) if side == "ours" else (None, script)
    with pytest.raises(
        AssertionError, match=r"^step 1, parameter 0 \(shape \(3, 2\)\): state keys"
    ):
        compare(ours, theirs)  # compare_state is on by default
    compare(ours, theirs, compare_state=False)


def test_state_values_are_compared_unless_compare_state_is_off():
    with pytest.raises(AssertionError, match=r"state\['buf'\]"):
        compare(fill(3.0, entry="buf"), None)
    compare(fill(3.0, entry="buf"), None, compare_state=False)


def test_no_state_at_all_fails_against_a_reference_with_state():
    class Stateless(Scripted):
        @torch.no_grad()
        def step(self, closure=None):
            super().step(closure)
            self.state.clear()

    with pytest.raises(AssertionError, match="state keys"):
        assert_same_trajectory(Stateless, Scripted, tensors(), steps=1)


def test_a_none_state_entry_counts_as_absent():
    compare(add_entry("extra", None), None)
    compare(None, add_entry("extra", None))


def test_step_entries_must_be_equal_exactly():
    """Even where the tolerance would accept the difference."""

    def later(step, index, p, state):
        state["step"] += 1e-3

    compare(fill(1.0 + 1e-3), fill(1.0), rtol=1e-2, atol=1e-2)  # the tolerance is loose
    with pytest.raises(AssertionError, match=r"state\['step'\]"):
        compare(later, None, rtol=1e-2, atol=1e-2)


# -- what an error says --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        (None, "step 2, parameter 1 (shape (4,)): "),
        ("buf", "step 2, parameter 1 (shape (4,)), state['buf']: "),
    ],
)
def test_the_error_names_the_first_step_parameter_and_entry_that_differ(entry, where):
    """A difference made at step 2 (and kept after) is reported at step 2."""

    def script(step, index, p, state):
        if index == 1 and step >= 2:
            (p if entry is None else state[entry]).add_(1.0)

    with pytest.raises(AssertionError) as caught:
        compare(script, None)
    assert str(caught.value).startswith(where), str(caught.value)


# -- steps, seed and gradients -------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 4])
def test_steps_steps_with_gradients_for_steps_1_to_steps(steps):
    calls, log = [], []

    def gradient(step, index, param, gen):
        calls.append((step, index))
        return random_gradient(step, index, param, gen)

    assert_same_trajectory(
        factory(log=log), factory(log=log), tensors(), steps=steps, gradient=gradient
    )
    assert calls == [(s, i) for s in range(1, steps + 1) for i in range(2)]
    assert [optimizer.count for optimizer in log] == [steps, steps]


@pytest.mark.parametrize("seed", [0, 5])
def test_the_generator_is_seeded_with_seed(seed):
    firsts = []

    def gradient(step, index, param, gen):
        grad = random_gradient(step, index, param, gen)
        if (step, index) == (1, 0):
            firsts.append(grad)
        return grad

    assert_same_trajectory(factory(), factory(), tensors(), steps=1, seed=seed, gradient=gradient)
    expected = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(firsts[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("gradients", ["in_place", "fresh"])
def test_both_get_the_same_gradients_each_in_its_own_tensor(gradients):
    log = []
    given = []

    def gradient(step, index, param, gen):
        grad = random_gradient(step, index, param, gen)
        given.append((grad, grad.clone()))
        return grad

    def scales_its_gradient(step, index, p, state):
        p.grad.mul_(-3.0)  # writes into p.grad, as a maximize flag might

    assert_same_trajectory(
        factory(scales_its_gradient, log),
        factory(log=log),
        tensors(),
        steps=3,
        gradient=gradient,
        gradients=gradients,
        compare_state=False,
    )
    ours, theirs = log
    flat = [g for step in theirs.values for g in step]
    assert len(flat) == len(given)
    for seen, (returned, value) in zip(flat, given, strict=True):
        torch.testing.assert_close(seen, value, rtol=0, atol=0)  # the reference's: untouched
        torch.testing.assert_close(returned, value, rtol=0, atol=0)  # the gradient fn's too
    for mine, its in zip(ours.grads, theirs.grads, strict=True):
        assert all(a is not b for a, b in zip(mine, its, strict=True))


def test_in_place_writes_into_the_existing_grad():
    log = []
    assert_same_trajectory(factory(log=log), factory(log=log), tensors(), steps=3)
    for optimizer in log:
        first = optimizer.grads[0]
        for later in optimizer.grads[1:]:
            assert all(a is b for a, b in zip(first, later, strict=True))


def test_fresh_sets_to_none_on_both_and_assigns_new_tensors():
    log = []
    assert_same_trajectory(
        factory(log=log), factory(log=log), tensors(), steps=3, gradients="fresh"
    )
    for optimizer in log:
        assert optimizer.zero_grads == [True, True, True]
        ids = [id(g) for step in optimizer.grads for g in step]
        assert len({id(g) for step in optimizer.grads for g in step}) == len(ids)


@pytest.mark.parametrize("gradients", ["in_place", "fresh"])
def test_a_none_gradient_leaves_the_parameter_without_one(gradients):
    """Parameter 1 has a gradient at step 1, none at steps 2 and 3, one again at 4."""
    log = []

    def gradient(step, index, param, gen):
        grad = random_gradient(step, index, param, gen)
        return None if index == 1 and step in (2, 3) else grad

    assert_same_trajectory(
        factory(log=log),
        factory(log=log),
        tensors(),
        steps=4,
        gradient=gradient,
        gradients=gradients,
    )
    for optimizer in log:
        assert [step[1] is None for step in optimizer.grads] == [False, True, True, False]
        assert all(step[0] is not None for step in optimizer.grads)


@pytest.mark.parametrize("gradients", ["inplace", "none", "fresh_"])
def test_an_unknown_gradients_mode_raises(gradients):
    with pytest.raises(ValueError, match="gradients must be one of"):
        assert_same_trajectory(factory(), factory(), tensors(), steps=1, gradients=gradients)


# -- the copies -----------------------------------------------------------------------------


def strided_tensors():
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    parameter = torch.nn.Parameter(torch.randn(5, generator=gen))  # requires grad itself
    return [base.t(), base[:, ::2], torch.randn((), generator=gen), parameter]


def test_leaf_copies_are_independent_trainable_and_keep_strides():
    originals = strided_tensors()
    copies = leaf_copies(originals)
    for original, copy in zip(originals, copies, strict=True):
        assert copy.is_leaf and copy.requires_grad
        assert (copy.shape, copy.stride(), copy.dtype, copy.device) == (
            original.shape,
            original.stride(),
            original.dtype,
            original.device,
        )
        torch.testing.assert_close(copy.detach(), original.detach(), rtol=0, atol=0)
        with torch.no_grad():
            copy.add_(1.0)
        assert not torch.equal(copy.detach(), original.detach())


def test_each_optimizer_gets_its_own_copies_and_the_tensors_stay_unchanged():
    originals = strided_tensors()
    kept = [t.detach().clone() for t in originals]
    seen = []

    def make(params):
        seen.append(params)
        return Scripted(params)

    assert_same_trajectory(make, make, originals, steps=2)
    for original, before in zip(originals, kept, strict=True):
        torch.testing.assert_close(original.detach(), before, rtol=0, atol=0)
    ours, theirs = seen
    for p, q, original in zip(ours, theirs, originals, strict=True):
        assert p is not q and p.data_ptr() != q.data_ptr()
        assert p.stride() == q.stride() == original.stride()


# -- set_gradient and random_gradient -------------------------------------------------------


def test_set_gradient_modes():
    p = torch.zeros(3, requires_grad=True)
    grad = torch.ones(3)
    set_gradient(p, grad)  # no p.grad yet: a new tensor, not the one given
    assert p.grad is not grad and torch.equal(p.grad, grad)
    existing = p.grad
    set_gradient(p, 2 * grad)
    assert p.grad is existing and torch.equal(existing, 2 * grad)
    set_gradient(p, 3 * grad, "fresh")
    assert p.grad is not existing and torch.equal(p.grad, 3 * grad)
    assert torch.equal(existing, 2 * grad)  # the old tensor was not written
    set_gradient(p, None)
    assert p.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_gradient_is_standard_normal_in_the_parameters_dtype(dtype):
    param = torch.zeros(200, 50, dtype=dtype)
    first = random_gradient(1, 0, param, torch.Generator().manual_seed(4))
    again = random_gradient(1, 0, param, torch.Generator().manual_seed(4))
    assert first.shape == param.shape and first.dtype == dtype
    assert torch.equal(first, again)
    assert abs(first.mean().item()) < 0.05 and abs(first.std().item() - 1) < 0.05


def test_the_harness_passes_an_optimizer_against_itself():
    """The baseline of every test above: identical optimizers agree at zero tolerance."""
    for gradients in ("in_place", "fresh"):
        assert_same_trajectory(
            functools.partial(Scripted, script=fill(2.0)),
            functools.partial(Scripted, script=fill(2.0)),
            strided_tensors(),
            steps=3,
            rtol=0,
            atol=0,
            gradients=gradients,
        )
