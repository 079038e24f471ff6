"""The assignments' grader: it accepts the reference solutions, rejects the typical
wrong ones with the right hint, and works from a notebook and from the shell.

Its promises, each tested with a solution built to break exactly that promise (which
must fail that check, and only it):

- every parameter and state entry agrees within ``rtol=RTOL, atol=ATOL`` of the
  reference, tight enough that an lr passed through float32 fails every check; compare()
  marks (``*``) exactly the differences beyond that tolerance;
- each check exercises the hyper-parameters its name gives: a solution that ignores one
  fails exactly the checks that set it;
- "a late parameter": parameter 1 gets no gradient for steps 1-4 (a solution that counts
  the optimizer's steps itself fails it); "two groups": parameter 0's group has its own
  hyper-parameters (one that reads ``self.defaults`` fails it); "from torch's
  checkpoint" continues from torch.optim's checkpoint of step 10 and "torch from yours"
  from the solution's (one that keeps its count in the param group fails the first, one
  whose checkpoint lacks ``step`` the second); each with its hint;
- check_group: each invalid setting raises a ValueError naming the argument, also in a
  param group added later; the edge cases are accepted;
- fused: fewer than one tensor operation per two extra parameters.
"""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minioptim import FusedOptimizer, grade
from minioptim.grade import (
    ASSIGNMENTS,
    GradingFailed,
    LoopLAMB,
    Trajectory,
    compare,
    load_file,
    main,
    run,
)
from minioptim.grade.loops import with_mistake

GRADING = Path(__file__).parent / "grading"
ROOT = Path(__file__).parent.parent
SPECS = [spec for task in ASSIGNMENTS.values() for spec in task.specs]


def solution(name: str):
    return load_file(GRADING / f"{name}.py")


def hints(report) -> list[str]:
    return [result.hint or "" for result in report.failed]


# ---------------------------------------------------------------------------------------
# Each promise of the grader, with a solution built to break exactly that promise
# ---------------------------------------------------------------------------------------
# (First in the file, the cheapest first: make mutate stops at the first failure.)

# The rules of check_group in assignment 1, each as (the argument the message must name,
# whether a group breaks the rule).
SGD_RULES = {
    "lr < 0": ("lr", lambda g: g["lr"] < 0),
    "momentum < 0": ("momentum", lambda g: g["momentum"] < 0),
    "momentum >= 1": ("momentum", lambda g: g["momentum"] >= 1),
    "dampening < 0": ("dampening", lambda g: g["dampening"] < 0),
    "dampening > 1": ("dampening", lambda g: g["dampening"] > 1),
    "weight_decay < 0": ("weight_decay", lambda g: g["weight_decay"] < 0),
    "nesterov, momentum == 0": ("nesterov", lambda g: g["nesterov"] and g["momentum"] == 0),
    "nesterov, dampening != 0": ("nesterov", lambda g: g["nesterov"] and g["dampening"] != 0),
}
# Edge cases the rules must accept, as a rule one comparison too strict.
SGD_EDGES = {
    "lr == 0": ("lr", lambda g: g["lr"] <= 0),
    "dampening == 1": ("dampening", lambda g: g["dampening"] >= 1),
    "momentum close to 1": ("momentum", lambda g: g["momentum"] > 0.95),
    "weight_decay == 0": ("weight_decay", lambda g: g["weight_decay"] <= 0),
    "nesterov": ("nesterov", lambda g: g["nesterov"]),
}


def _checking(rules: dict, unnamed: str | None = None):
    """The reference MomentumSGD whose check_group enforces ``rules``; the message of
    rule ``unnamed`` does not name its argument."""

    class Checked(solution("assignment1").MomentumSGD):
        def check_group(self, group):
            for rule, (argument, broken) in rules.items():
                if broken(group):
                    if rule == unnamed:
                        raise ValueError("invalid hyper-parameter")
                    raise ValueError(f"{argument} is invalid")

    return Checked


VALIDATION = ASSIGNMENTS["assignment1"].checks[-1]


def test_check_group_with_every_rule_passes():
    assert VALIDATION.run(_checking(SGD_RULES)).passed


@pytest.mark.parametrize("rule", sorted(SGD_RULES))
def test_check_group_without_one_rule_fails(rule):
    result = VALIDATION.run(_checking({k: v for k, v in SGD_RULES.items() if k != rule}))
    assert not result.passed
    assert result.details[0].endswith(": accepted; it should raise ValueError")


@pytest.mark.parametrize("rule", sorted(SGD_RULES))
def test_check_group_whose_message_does_not_name_the_argument_fails(rule):
    result = VALIDATION.run(_checking(SGD_RULES, unnamed=rule))
    assert not result.passed
    assert f"the ValueError does not name {SGD_RULES[rule][0]!r}" in result.details[0]


@pytest.mark.parametrize("edge", sorted(SGD_EDGES))
def test_check_group_that_rejects_an_edge_case_fails(edge):
    result = VALIDATION.run(_checking({**SGD_RULES, edge: SGD_EDGES[edge]}))
    assert not result.passed


class SetTo(torch.optim.Optimizer):
    """Sets every parameter with a gradient to ``value`` at every step (``entry``: the
    parameter to 0 and ``state["x"]`` to ``value``)."""

    def __init__(self, params, value=0.0, entry=False):
        super().__init__(params, dict(value=value, entry=entry))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.fill_(0.0 if group["entry"] else group["value"])
                    self.state[p]["x"] = torch.full_like(
                        p, group["value"] if group["entry"] else 0.0
                    )


@pytest.mark.parametrize("entry", [False, True], ids=["param", "state"])
@pytest.mark.parametrize("sign", [1, -1], ids=["above", "below"])
@pytest.mark.parametrize("value", [0.0, 1e3], ids=["atol", "rtol"])
def test_the_tolerance_is_rtol_and_atol_of_the_reference_value(value, sign, entry):
    """Within RTOL * |reference| + ATOL passes (and compare() marks nothing), beyond fails."""
    check = Trajectory(grade.SGD_SPEC, "a toy", {"entry": entry})
    bound = grade.ATOL + grade.RTOL * abs(value)
    reference = functools.partial(SetTo, value=value)
    for factor, agrees in [(0.9, True), (1.1, False)]:
        ours = functools.partial(SetTo, value=value + sign * factor * bound)
        assert check.agrees(ours, reference) is agrees, factor
        rows = grade.trace(
            lambda ps, o=ours: o(ps, entry=entry),
            lambda ps: reference(ps, entry=entry),
            grade.make_tensors(),
            steps=1,
        )
        assert rows[0]["x" if entry else "param"][1] is not agrees, factor


def _with_extra_ops(per_params):
    """The reference LAMB plus ``per_params(n)`` tensor operations per update of n params."""
    reference = solution("assignment3").LAMB

    class Extra(reference):
        def update(self, group, param, grad, state, step, layout):
            for _ in range(per_params(len(layout))):
                grad.sum()
            super().update(group, param, grad, state, step, layout)

    return Extra


@pytest.mark.parametrize(
    ("extra", "passes"),
    [
        (lambda n: 5, True),  # a constant number: no loop over the parameters
        (lambda n: n // 3, True),  # fewer than one per two extra parameters
        (lambda n: n // 2, False),  # one per two
        (lambda n: n, False),  # one per parameter
    ],
    ids=["constant", "one per three", "one per two", "one per parameter"],
)
def test_the_fused_check_counts_operations_per_extra_parameter(extra, passes):
    fused = ASSIGNMENTS["assignment3"].checks[-1]
    assert fused.run(_with_extra_ops(extra)).passed is passes


def _with_conversions(per_params):
    """The reference LAMB plus ``per_params(n)`` elements turned into Python numbers per
    update of n params (no extra ATen operation: tolist reads the memory directly)."""
    reference = solution("assignment3").LAMB

    class Converting(reference):
        def update(self, group, param, grad, state, step, layout):
            grad[: per_params(len(layout))].tolist()
            super().update(group, param, grad, state, step, layout)

    return Converting


@pytest.mark.parametrize(
    ("elements", "passes"),
    [
        (lambda n: 5, True),
        (lambda n: n // 3, True),
        (lambda n: n // 2, False),
        (lambda n: n, False),
    ],
    ids=["constant", "one per three", "one per two", "one per parameter"],
)
def test_the_fused_check_counts_conversions_to_python_per_extra_parameter(elements, passes):
    result = ASSIGNMENTS["assignment3"].checks[-1].run(_with_conversions(elements))
    assert result.passed is passes
    if not passes:
        assert result.hint == GENERAL_HINTS["to Python"]


def test_the_large_check_gives_a_trust_ratio_above_10():
    """So that a ratio clipped at 10 fails it; every other check stays below 10."""
    ratios = []

    class Recording(solution("assignment3").LAMB):
        def step(self, closure=None):
            super().step(closure)
            ratios.append(max(float(s["trust"]) for s in self.state.values()))

    for check in _trajectories(grade.LAMB_SPEC):
        ratios.clear()
        check.compare(Recording, check.spec.reference)
        assert (max(ratios) > 10) is (check.variant == "large"), check.name


GENERAL_HINTS = grade.GENERAL_HINTS


def label(result) -> str:
    """A check's (or a result's) name without the hyper-parameters: 'MomentumSGD, two
    groups'."""
    return getattr(result, "check", getattr(result, "name", "")).split(" (")[0]


SGD_LABELS = ["heavy ball", "dampening", "Nesterov", "weight decay", "all"]
SGD_LABELS += ["Nesterov, weight decay", "no momentum", "a late parameter"]
SGD_LABELS += ["a zero first gradient", "two groups"]
ADAGRAD_LABELS = ["plain", "initial accumulator", "lr decay", "weight decay", "large eps"]
ADAGRAD_LABELS += ["all", "from torch's checkpoint", "torch from yours"]
LAMB_LABELS = ["defaults", "no weight decay", "strong weight decay", "large eps"]
LAMB_LABELS += ["a late parameter", "a large parameter", "two groups"]

# Each wrong solution, its assignment, the checks it must fail (all others pass), and
# words of the hint (or of the details) of each failure.
EXACTLY = [
    (
        "wrong_counts_optimizer_steps",  # the late check exercises a late parameter
        "assignment1",
        ["MomentumSGD, a late parameter"],
        GENERAL_HINTS["late"],
    ),
    (
        "wrong_lamb_counts_optimizer_steps",
        "assignment3",
        ["LAMB, a late parameter"],
        GENERAL_HINTS["late"],
    ),
    (
        "wrong_hyper_from_defaults",  # the groups check gives parameter 0 its own hyper
        "assignment1",
        ["MomentumSGD, two groups"],
        GENERAL_HINTS["groups"],
    ),
    (
        "wrong_lamb_hyper_from_defaults",
        "assignment3",
        ["LAMB, two groups"],
        GENERAL_HINTS["groups"],
    ),
    (
        "wrong_step_in_param_group",  # "from torch" loads torch.optim's checkpoint
        "assignment2",
        ["Adagrad, from torch's checkpoint"],
        GENERAL_HINTS["from torch"],
    ),
    (
        "wrong_checkpoint_without_step",  # "to torch" loads yours
        "assignment2",
        ["Adagrad, torch from yours"],
        "raised KeyError",
    ),
    (
        "wrong_validates_in_init",  # check_group is also checked in groups added later
        "assignment1",
        ["MomentumSGD, check_group rejects invalid hyper-parameters"],
        "lr=-0.1: accepted in a param group added later; it should raise ValueError",
    ),
    (
        "wrong_first_step_from_zero_buffer",  # the zero check's first gradients are 0
        "assignment1",
        ["MomentumSGD, a zero first gradient"],
        GENERAL_HINTS["zero"],
    ),
    (
        "wrong_trust_clipped",  # the large check's trust ratio is above 10
        "assignment3",
        ["LAMB, a large parameter"],
        "Your trust ratio is clipped at 10",
    ),
    (
        "wrong_trust_from_tolist",  # the fused check counts conversions to Python too
        "assignment3",
        ["LAMB, no Python loop over the parameters"],
        GENERAL_HINTS["to Python"],
    ),
    (
        "wrong_lr_through_float32",  # the tolerance: a relative 1.5e-8 in lr shows
        "assignment2",
        [f"Adagrad, {label}" for label in ADAGRAD_LABELS],
        "look at the step itself (eps, and the decayed learning rate",
    ),
]


@pytest.mark.parametrize(
    ("name", "assignment", "failed", "says"), EXACTLY, ids=[e[0] for e in EXACTLY]
)
def test_a_solution_that_breaks_one_promise_fails_exactly_its_checks(
    name, assignment, failed, says
):
    report = run(assignment, solution(name))
    assert [label(result) for result in report.failed] == failed, str(report)
    for result in report.failed:
        said = [*result.details, result.hint or ""]
        assert any(says in text for text in said), "\n".join(result.lines())


def test_one_failed_check_fails_the_grade(capsys):
    """grade() raises and the shell's exit status is 1 if any check fails, even one."""
    wrong = solution("wrong_counts_optimizer_steps")
    with pytest.raises(GradingFailed):
        grade.grade("assignment1", wrong)
    assert capsys.readouterr().out.splitlines()[-1] == "10 of 11 checks passed, 1 failed."
    assert not run("assignment1", wrong).passed
    assert main(["assignment1", str(GRADING / "wrong_counts_optimizer_steps.py")]) == 1


class NesterovScaledDown(solution("assignment1").MomentumSGD):
    """The Nesterov direction divided by 1 + momentum: wrong only with nesterov=True,
    and like none of the typical mistakes."""

    def update(self, group, param, grad, state, step):
        momentum = group["momentum"]
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if momentum != 0:
            buffer = state["momentum_buffer"]
            if step == 1:
                buffer.copy_(grad)
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            if group["nesterov"]:
                grad = grad.add(buffer, alpha=momentum) / (1 + momentum)  # WRONG
            else:
                grad = buffer
        param.add_(grad, alpha=-group["lr"])


class SquaredLrDecay(solution("assignment2").Adagrad):
    """lr / (1 + (t - 1) lr_decay)**2: wrong only with lr_decay."""

    def update(self, group, param, grad, state, step):
        decay = 1 + (step - 1) * group["lr_decay"]
        super().update({**group, "lr": group["lr"] / decay}, param, grad, state, step)


class DecayingSum(solution("assignment2").Adagrad):
    """sum <- 0.999 sum + g**2: equal to torch's at step 1 (from a zero sum), not later."""

    def update(self, group, param, grad, state, step):
        state["sum"].mul_(0.999)
        super().update(group, param, grad, state, step)


# A solution without a typical mistake, a check it fails, and how that check's hint
# starts: the feature that, switched off, makes the check pass; else the entry that
# diverged first.
HINTS = [
    (
        NesterovScaledDown,
        "MomentumSGD, Nesterov, weight decay",
        "It passes with nesterov=False",
    ),
    (SquaredLrDecay, "Adagrad, lr decay", "It passes with lr_decay=0"),
    (DecayingSum, "Adagrad, plain", "state['sum'] agrees for 1 step(s), then differs"),
]


@pytest.mark.parametrize(("cls", "check", "hint"), HINTS, ids=[h[0].__name__ for h in HINTS])
def test_a_hint_points_at_the_feature_or_entry_that_differs(cls, check, hint):
    (found,) = [c for task in ASSIGNMENTS.values() for c in task.checks if label(c) == check]
    result = found.run(cls)
    assert not result.passed
    assert result.hint.startswith(hint), result.hint


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_the_late_checks_give_parameter_1_its_first_gradient_at_step_5(spec):
    """Parameter 1 gets no gradient for steps 1-4 (its first update comes at step 5);
    every other parameter, and every parameter in the other checks, one at every step."""
    seen = []

    class Recording(_reference_solution(spec)):
        def step(self, closure=None):
            seen.append([p.grad is not None for p in self.param_groups[0]["params"]])
            return super().step(closure)

    checks = [check for check in _trajectories(spec) if check.variant in (None, "late")]
    assert any(check.variant == "late" for check in checks) is (spec.name != "Adagrad")
    for check in checks:
        seen.clear()
        check.compare(Recording, spec.reference)
        expected = [[True, check.variant != "late" or s > 4, True] for s in range(1, 31)]
        assert seen == expected, check.name


def test_the_checkpoint_checks_load_the_right_optimizers_checkpoint_of_step_10():
    """'from torch': torch.optim's checkpoint (its groups have 'foreach'); 'to torch':
    yours; both saved after 10 steps."""
    reference = solution("assignment2").Adagrad
    loaded = []

    class Recording(reference):
        def load_state_dict(self, state_dict):
            steps = {float(entries["step"]) for entries in state_dict["state"].values()}
            loaded.append(("foreach" in state_dict["param_groups"][0], steps))
            super().load_state_dict(state_dict)

    checks = {c.variant: c for c in ASSIGNMENTS["assignment2"].checks if c.spec.name == "Adagrad"}
    checks["from torch"].compare(Recording, checks["from torch"].spec.reference)
    assert loaded == [(True, {10.0})]
    loaded.clear()
    checks["to torch"].compare(Recording, checks["to torch"].spec.reference)
    assert loaded == [(False, {10.0})]


def _passing_through(cls, change):
    """``cls``, but its update and state declaration see ``change(group)`` as the group."""
    if "layout" in inspect.signature(cls.update).parameters:

        class Changed(cls):
            def state_names(self, group):
                return super().state_names(change(group))

            def update(self, group, param, grad, state, step, layout):
                super().update(change(group), param, grad, state, step, layout)

    else:

        class Changed(cls):
            def state_names(self, group):
                return super().state_names(change(group))

            def update(self, group, param, grad, state, step):
                super().update(change(group), param, grad, state, step)

    return Changed


def _reference_solution(spec):
    for assignment, task in ASSIGNMENTS.items():
        if spec in task.specs:
            return getattr(solution(assignment), spec.name)
    raise LookupError(spec.name)


def _trajectories(spec):
    return [
        check
        for task in ASSIGNMENTS.values()
        for check in task.checks
        if isinstance(check, Trajectory) and check.spec is spec
    ]


CHECKPOINTS = ["a late parameter", "from torch's checkpoint", "torch from yours"]

# Which checks exercise each hyper-parameter: a solution that ignores it (always uses the
# default of the assignment's signature) must fail exactly these. A checkpoint check
# cannot see a wrong initial value (initial_accumulator_value): the state is loaded.
EXERCISED = {
    "MomentumSGD": {
        "lr": SGD_LABELS,
        "momentum": [label for label in SGD_LABELS if label != "no momentum"],
        "dampening": ["dampening", "all", "a late parameter", "a zero first gradient"],
        "weight_decay": ["weight decay", "all", "Nesterov, weight decay", "no momentum"],
        "nesterov": ["Nesterov", "Nesterov, weight decay"],
    },
    "RMSprop": {
        "lr": ["all"],
        "alpha": ["large eps"],
        "eps": ["large eps", "all"],
        "weight_decay": ["weight decay", "all"],
        "momentum": ["momentum", "all", *CHECKPOINTS],
        "centered": ["centered", "all", *CHECKPOINTS],
    },
    "Adagrad": {
        "lr": ADAGRAD_LABELS,
        "lr_decay": ["lr decay", "all", "from torch's checkpoint", "torch from yours"],
        "weight_decay": ["weight decay", "all", "torch from yours"],
        "initial_accumulator_value": ["initial accumulator", "all"],
        "eps": ["large eps"],
    },
    "LAMB": {
        "lr": LAMB_LABELS,
        "betas": ["strong weight decay"],
        "eps": ["large eps"],
        "weight_decay": [
            "no weight decay",
            "strong weight decay",
            "a late parameter",
            "two groups",
        ],
    },
}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_each_hyper_parameter_is_exercised_by_the_checks_that_set_it(spec):
    reference = _reference_solution(spec)
    checks = _trajectories(spec)
    assert set(EXERCISED[spec.name]) == set(spec.loop.hyper)
    for name, labels in EXERCISED[spec.name].items():
        default = spec.loop.hyper[name]
        ignores = _passing_through(reference, lambda group, n=name, d=default: {**group, n: d})
        failed = [c.label for c in checks if not c.agrees(ignores, spec.reference)]
        assert failed == labels, f"{spec.name} ignoring {name}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_an_lr_passed_through_float32_fails_every_trajectory_check(spec):
    """A relative error of ~1e-8 in one hyper-parameter shows in float64 (RTOL = 1e-9)."""

    def float32_lr(group):
        return {**group, "lr": torch.tensor(group["lr"], dtype=torch.float32).item()}

    wrong = _passing_through(_reference_solution(spec), float32_lr)
    passed = [check.name for check in _trajectories(spec) if check.agrees(wrong, spec.reference)]
    assert passed == []


# ---------------------------------------------------------------------------------------
# The reference solutions, the typical mistakes, the report and the entry points
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_reference_solution_passes(assignment):
    report = run(assignment, solution(assignment))
    assert report.passed, str(report)


def test_torch_optims_own_messages_name_the_arguments():
    """ "Invalid learning rate", "Nesterov momentum requires ...": lr and nesterov."""
    report = run("assignment1", solution("right_torch_messages"))
    assert report.passed, str(report)


# Each wrong solution, the assignment it is for, and words of the hint that every one of
# its failures must give.
WRONG = [
    ("wrong_momentum_order", "assignment1", "before updating it"),
    ("wrong_dampened_first_step", "assignment1", "step == 1"),
    ("wrong_state_replaced", "assignment2", "in place"),
    ("wrong_eps_inside_sqrt", "assignment2", "eps is inside the square root"),
    ("wrong_own_step_counter", "assignment2", "not a counter of your own"),
    ("wrong_bias_correction", "assignment3", "bias correction is missing"),
    ("wrong_coupled_weight_decay", "assignment3", "must be decoupled"),
    ("wrong_loop_over_params", "assignment3", "layout.norm"),
    ("wrong_weight_decay_into_grad", "assignment1", "Write grad = grad.add(param"),
    ("wrong_weight_decay_in_buffer", "assignment1", "You add weight_decay * p to the buffer"),
    ("wrong_state_by_id", "assignment2", "keeps tensors of its own in self.square_avgs"),
    ("wrong_bias_correction_in_place", "assignment3", "by their bias corrections in place"),
    ("wrong_sqrt_of_bias_correction", "assignment3", "by the square root of the correction"),
    ("wrong_weight_decay_outside_trust", "assignment3", "weight decay goes inside the trust"),
]


@pytest.mark.parametrize(("name", "assignment", "words"), WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_solution_fails_with_the_right_hint(name, assignment, words):
    report = run(assignment, solution(name))
    assert report.failed, f"{name} passed every check"
    for result in report.failed:
        assert words in (result.hint or ""), "\n".join(result.lines())
    assert all(len(line) <= grade.WIDTH for line in str(report).splitlines())


def test_a_failure_names_step_parameter_entry_and_size():
    report = run("assignment1", solution("wrong_dampened_first_step"))
    first = report.failed[0]
    assert first.check.startswith("MomentumSGD, dampening")
    where, size, same_step = first.details
    assert where == "step 1, parameter 0 (shape (4, 3)): the parameter differs first,"
    assert size.startswith("by up to ") and "(relative " in size
    assert same_step.startswith("at step 1 also state['momentum_buffer'] (by up to ")


def test_the_wrong_order_passes_what_it_should():
    """Without momentum, the order of buffer and step does not matter."""
    report = run("assignment1", solution("wrong_momentum_order"))
    passed = {result.check.split(" (")[0] for result in report.results if result.passed}
    assert passed == {
        "MomentumSGD, no momentum",
        "MomentumSGD, check_group rejects invalid hyper-parameters",
    }


def test_the_own_step_counter_fails_only_the_checkpoints():
    report = run("assignment2", solution("wrong_own_step_counter"))
    assert [r.check.split(" (")[0] for r in report.failed] == [
        "Adagrad, from torch's checkpoint",
        "Adagrad, torch from yours",
    ]
    assert report.failed[0].details[0].startswith("after loading a checkpoint saved at step")


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.loop is not s.reference], ids=lambda spec: spec.name
)
def test_the_loops_without_mistakes_are_torch_optim(spec):
    checks = [
        check
        for task in ASSIGNMENTS.values()
        for check in task.checks
        if isinstance(check, Trajectory) and check.spec is spec
    ]
    for check in checks:
        check.compare(spec.loop, spec.reference)


def test_the_lamb_reference_by_hand():
    """Step 1 of LAMB: m_hat = g, v_hat = g**2, so r = g / (|g| + eps) + wd * p."""
    p = torch.tensor([3.0, -4.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.5, 2.0], dtype=torch.float64)
    p.grad = g.clone()
    lr, eps, wd = 0.1, 1e-6, 0.5
    expected = p.detach().clone()
    r = g / (g.abs() + eps) + wd * expected
    expected -= lr * (expected.norm() / r.norm()) * r
    LoopLAMB([p], lr=lr, eps=eps, weight_decay=wd).step()
    torch.testing.assert_close(p.detach(), expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_every_typical_mistake_is_recognised(spec):
    """Each mistake the loops can make fails some check, with that mistake's hint (the
    checks from scratch: the "large" one alone has a trust ratio above 10)."""
    checks = [check for check in _trajectories(spec) if check.variant in (None, "large")]
    for mistake, hint in spec.loop.mistakes.items():
        wrong = with_mistake(spec.loop, mistake)
        for check in checks:
            result = check.run(wrong)
            if not result.passed:
                assert result.hint == hint, f"{mistake}: {result.check}: {result.hint}"
                break
        else:
            pytest.fail(f"{spec.name}: no check fails with the mistake {mistake!r}")


class Starter(FusedOptimizer):
    """What a starter notebook holds before the student's work."""

    def __init__(self, params, lr=1e-3, **hyper):
        super().__init__(params, dict(lr=lr, **hyper))

    def check_group(self, group):
        raise NotImplementedError("TODO: check_group")


def test_the_starter_fails_every_check_as_not_implemented(capsys):
    with pytest.raises(GradingFailed) as caught:
        grade.grade("assignment1", MomentumSGD=Starter)
    report = caught.value.report
    assert not any(result.passed for result in report.results)
    for result in report.results:
        assert result.details == ["not implemented yet (TODO: check_group)"]
    out = capsys.readouterr().out
    assert out.count("(as above)") == len(report.results) - 1
    assert out.splitlines()[-1] == "0 of 11 checks passed, 11 failed."
    # In a notebook the exception shows as this one line, with no traceback.
    assert caught.value._render_traceback_() == [
        "GradingFailed: 0 of 11 checks passed, 11 failed. See the report above."
    ]


def test_grade_prints_the_report_and_raises_nothing_when_everything_passes(capsys):
    assert grade.grade("assignment3", solution("assignment3")) is None
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "assignment3: LAMB with per-tensor trust ratios, fused"
    assert sum(line.startswith("PASS  LAMB") for line in out) == 8
    assert out[-1] == "All 8 checks passed."


def test_classes_come_from_keywords_dicts_and_modules():
    module = solution("assignment1")
    assert run("assignment1", vars(module)).passed
    assert run("assignment1", MomentumSGD=module.MomentumSGD).passed
    missing = run("assignment2", RMSprop=Starter)
    adagrad = [r for r in missing.results if r.check.startswith("Adagrad")]
    assert adagrad and all(r.details == ["no class named Adagrad"] for r in adagrad)
    with pytest.raises(TypeError, match="asks for"):
        run("assignment2", Adam=Starter)
    with pytest.raises(ValueError, match="assignment1, assignment2, assignment3"):
        run("assignment4")


def test_torch_optim_itself_is_not_an_answer():
    report = run("assignment2", RMSprop=torch.optim.RMSprop, Adagrad=torch.optim.Adagrad)
    assert not any(result.passed for result in report.results)
    assert "subclass of minioptim.FusedOptimizer" in report.results[0].hint


def test_state_names_unlike_torch_get_the_names():
    reference = solution("assignment2").RMSprop

    class Renamed(reference):
        def state_names(self, group):
            return ("v",)

        def update(self, group, param, grad, state, step):
            state["v"].mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
            param.addcdiv_(grad, state["v"].sqrt().add_(group["eps"]), value=-group["lr"])

    result = run("assignment2", RMSprop=Renamed, Adagrad=solution("assignment2").Adagrad)
    first = result.failed[0]
    assert "state keys ['step', 'v'] != reference ['square_avg', 'step']" in first.details[0]
    assert first.hint.startswith("The grader expects the state names 'square_avg'")


def test_a_state_entry_kept_by_only_one_gets_the_state_names():
    """Renamed and wrong: the parameters differ first, but the names are the cause."""
    reference = solution("assignment2").RMSprop

    class RenamedAndSwapped(reference):
        def state_names(self, group):
            return ("v",)

        def update(self, group, param, grad, state, step):
            v, alpha = state["v"], group["alpha"]
            v.mul_(1 - alpha).addcmul_(grad, grad, value=alpha)
            param.addcdiv_(grad, v.sqrt().add_(group["eps"]), value=-group["lr"])

    result = grade.ASSIGNMENTS["assignment2"].checks[0].run(RenamedAndSwapped)
    assert result.details[0].endswith("the parameter differs first,")
    assert "state['square_avg'] (missing or shaped differently)" in result.details[2]
    assert result.hint.startswith("state['square_avg'] is not kept alike"), result.hint
    assert "the grader expects the state names 'square_avg'" in result.hint


def test_a_divergence_after_a_checkpoint_counts_steps_from_the_start():
    report = run("assignment2", solution("wrong_state_by_id"))
    (from_torch,) = [r for r in report.failed if label(r) == "RMSprop, from torch's checkpoint"]
    assert from_torch.details[0].startswith(
        "after loading a checkpoint saved at step 10: step 11, parameter 0"
    )
    assert from_torch.details[2].startswith("at step 11 also")


def test_an_unknown_mistake_gets_where_it_diverged():
    """alpha and 1 - alpha swapped: no typical mistake fits, so the hint says where."""
    reference = solution("assignment2").RMSprop

    class Swapped(reference):
        def update(self, group, param, grad, state, step):
            v, alpha = state["square_avg"], group["alpha"]
            v.mul_(1 - alpha).addcmul_(grad, grad, value=alpha)
            param.addcdiv_(grad, v.sqrt().add_(group["eps"]), value=-group["lr"])

    result = grade.ASSIGNMENTS["assignment2"].checks[0].run(Swapped)
    assert result.hint.startswith("state['square_avg'] already differs after the first")


def test_check_group_rules_are_checked_one_by_one():
    reference = solution("assignment1").MomentumSGD

    class Lenient(reference):
        def check_group(self, group):  # forgets the nesterov rule
            if group["lr"] < 0:
                raise ValueError(f"lr must be >= 0, got {group['lr']}")
            if not 0 <= group["momentum"] < 1:
                raise ValueError(f"momentum must be in [0, 1), got {group['momentum']}")
            if not 0 <= group["dampening"] <= 1:
                raise ValueError(f"dampening must be in [0, 1], got {group['dampening']}")
            if group["weight_decay"] < 0:
                raise ValueError("weight_decay must be >= 0")

    class Strict(reference):
        def check_group(self, group):
            if group["lr"] <= 0:
                raise ValueError(f"lr must be > 0, got {group['lr']}")

    check = ASSIGNMENTS["assignment1"].checks[-1]
    assert check.run(Lenient).details == ["nesterov=True: accepted; it should raise ValueError"]
    assert check.run(Strict).details == ["momentum=-0.5: accepted; it should raise ValueError"]


def test_compare_prints_the_differences_step_by_step(capsys):
    wrong = solution("wrong_dampened_first_step").MomentumSGD
    compare(wrong, torch.optim.SGD, steps=2, lr=0.1, momentum=0.9, dampening=0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "param", "momentum_buffer"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"]
    assert lines[1].endswith("*")  # beyond the tolerance from step 1
    compare(Starter, torch.optim.SGD, lr=0.1)
    assert capsys.readouterr().out == "Starter: not implemented yet (TODO: check_group)\n"


def test_main_exit_status(capsys, tmp_path):
    assert main(["assignment1", str(GRADING / "assignment1.py")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "All 11 checks passed."
    assert main(["assignment9", "x.py"]) == 2
    assert "usage: python -m minioptim.grade" in capsys.readouterr().err
    assert main(["assignment1", str(tmp_path / "nothing.py")]) == 2
    assert "could not load" in capsys.readouterr().err


STARTER_FILE = """\
from minioptim import FusedOptimizer


class MomentumSGD(FusedOptimizer):
    def __init__(self, params, lr=1e-3, **hyper):
        super().__init__(params, dict(lr=lr, **hyper))

    def check_group(self, group):
        raise NotImplementedError("TODO: check_group")
"""


def test_the_shell_entry_point(tmp_path):
    """``python -m minioptim.grade`` on a starter (main's exit statuses are tested above)."""
    file = tmp_path / "my_optimizers.py"
    file.write_text(STARTER_FILE)
    command = [sys.executable, "-m", "minioptim.grade", "assignment1", str(file)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "assignment1: SGD with momentum, exactly as torch.optim.SGD"
    assert lines[1] == "FAIL  MomentumSGD, heavy ball (lr=0.1, momentum=0.9)"
    assert lines[2] == "      not implemented yet (TODO: check_group)"
    assert lines[-1] == "0 of 11 checks passed, 11 failed."
