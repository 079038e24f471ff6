"""The assignments' grader: it accepts the reference solutions, rejects the typical
wrong ones with the right hint, and works from a notebook and from the shell."""

from __future__ import annotations

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

GRADING = Path(__file__).parent / "grading"
ROOT = Path(__file__).parent.parent
SPECS = [spec for task in ASSIGNMENTS.values() for spec in task.specs]


def solution(name: str):
    return load_file(GRADING / f"{name}.py")


def hints(report) -> list[str]:
    return [result.hint or "" for result in report.failed]


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_reference_solution_passes(assignment):
    report = run(assignment, solution(assignment))
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
    """Each mistake the loops can make fails some check, with that mistake's hint."""
    checks = [
        check
        for task in ASSIGNMENTS.values()
        for check in task.checks
        if isinstance(check, Trajectory) and check.spec is spec and check.variant is None
    ]
    for mistake, hint in spec.loop.mistakes.items():
        wrong = grade._with_mistake(spec.loop, mistake)
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
    assert out.splitlines()[-1] == "0 of 10 checks passed, 10 failed."
    # In a notebook the exception shows as this one line, with no traceback.
    assert caught.value._render_traceback_() == [
        "GradingFailed: 0 of 10 checks passed, 10 failed. See the report above."
    ]


def test_grade_prints_the_report_and_raises_nothing_when_everything_passes(capsys):
    assert grade.grade("assignment3", solution("assignment3")) is None
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "assignment3: LAMB with per-tensor trust ratios, fused"
    assert sum(line.startswith("PASS  LAMB") for line in out) == 7
    assert out[-1] == "All 7 checks passed."


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
    assert capsys.readouterr().out.splitlines()[-1] == "All 10 checks passed."
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
    assert lines[-1] == "0 of 10 checks passed, 10 failed."
