"""torch.optim's own error inputs, run against minioptim (validation parity, issue 16).

PyTorch's test suite keeps a registry of its optimizers, ``optim_db`` in
``torch.testing._internal.common_optimizers``. Each entry's ``optim_error_inputs_func``
lists arguments that must fail, with the error's type and a message regex, and
``test_optim.py::TestOptimRenewed::test_errors`` (not shipped in the wheel) checks them:
for ``error_on=CONSTRUCTION_ERROR`` it builds ``optim_cls(params, **kwargs)`` inside
``assertRaisesRegex`` (``assertWarnsRegex`` when the type is a warning); for
``STEP_ERROR`` it builds the optimizer outside and calls ``step()`` inside. This file
does the same, with minioptim's class of the same name, for every optimizer of optim_db
that minioptim mirrors: SGD, Adam, AdamW and Muon (Lion and SignSGD are not in
torch.optim 2.13; test_validation.py covers them).

What must hold, per input:

- The error has torch's type (or a subclass) and comes at the same time (construction or
  step), unless ``DEVIATIONS`` lists the input with minioptim's type, time and reason.
- The message matches torch's regex, unless ``OWN_MESSAGES`` gives minioptim's regex.
  minioptim keeps torch's wording where it names the argument and says what is wrong; its
  own messages read "<argument> must be <rule>, got <value>", name the argument as the
  caller wrote it (``betas[0]``, ``weight_decay``) and say what to do. Each regex of
  ``OWN_MESSAGES`` names the argument, and a table entry whose message torch's regex
  matches after all is reported as not needed.
- Nothing is skipped silently: an input that cannot apply goes into ``NOT_APPLICABLE``
  with the reason and shows as a skip (none in torch 2.13), and every table entry must
  name an input that torch still has.

Two adaptations, each for every input it concerns (torch itself raises the same for the
adapted inputs: ``test_torch_raises_the_same_for_the_adapted_inputs``):

- ``params=None``. torch's inputs about hyper-parameters give no parameters: torch.optim's
  constructors check hyper-parameters before they read ``params``. minioptim checks every
  param group with one method (``check_group``, so that a group's own ``lr`` meets the same
  rules), after reading its parameters; these inputs get one 2-d float32 parameter.
- Inputs torch lists for CUDA only (built with a CUDA tensor): they are about the
  ``fused``, ``foreach`` and ``differentiable`` flags, which minioptim checks alike on every
  device, so they are generated with the CUDA branch taken and a CPU tensor, and run here.

Importing torch's registry needs the ``expecttest`` package (requirements.txt, "# tests").
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass
from typing import Any
from unittest import mock

import hypothesis
import pytest
import torch

import minioptim

MIRRORED = ("SGD", "Adam", "AdamW", "Muon")


def import_common_optimizers():
    """Import torch's registry without keeping what that import does to this process.

    ``torch.testing._internal.common_utils`` loads a hypothesis profile of its own (which
    test_properties.py would inherit), freezes ``torch.backends``' flags (after which
    setting ``torch.backends.cudnn.benchmark``, as Lightning's Trainer does, raises) and adds
    warning filters. Each is put back as it was.
    """
    profile = hypothesis.settings.get_current_profile_name()
    # torch.backends has disable_global_flags() and no public inverse; this private context
    # manager (torch's own, for its flags() helpers) restores the flag as it found it.
    unfrozen = getattr(torch.backends, "__allow_nonbracketed_mutation")
    with warnings.catch_warnings(), unfrozen():
        module = importlib.import_module("torch.testing._internal.common_optimizers")
    hypothesis.settings.load_profile(profile)
    return module


common_optimizers = import_common_optimizers()
CONSTRUCTION = common_optimizers.OptimizerErrorEnum.CONSTRUCTION_ERROR
STEP = common_optimizers.OptimizerErrorEnum.STEP_ERROR


@dataclass(frozen=True)
class Deviation:
    """minioptim raises otherwise than torch, on purpose."""

    error: type[BaseException]
    on: Any  # CONSTRUCTION or STEP
    message: str  # regex
    reason: str


# Keyed by the input's ``desc`` (the same expectations for every optimizer that has it).
OWN_MESSAGES = {
    "invalid param type": r"params must be an iterable of tensors or of dicts, got a single "
    r"tensor; pass \[tensor\] or model\.parameters\(\)",
    "beta1 should be between 0 and 1": r"betas\[0\] must be a number in \[0, 1\), got 1\.0",
    "weight_decay should > 0": r"weight_decay must be >= 0, got -1",
    "momentum should be between 0 and 1": r"momentum must be >= 0, got -0\.5",
    # torch names capturable=False, but minioptim has no capturable=True to offer
    "lr as Tensor doesn't work with foreach & not capturable": r"lr as a Tensor is not "
    r"supported with foreach=True.*drop foreach=True, or pass lr as a float",
    r"betas\[0\] as a Tensor is not supported for capturable=False and foreach=True": (
        r"betas\[0\] as a Tensor is not supported with foreach=True.*drop foreach=True, or "
        r"pass betas\[0\] as a float"
    ),
    # minioptim accepts int betas (torch does not): "floats" would be inaccurate
    "betas must be either both floats or both Tensors": r"betas must be either both numbers "
    r"or both tensors, got .*pass two floats",
    "only support 2D parameters": r"Muon optimizes 2-d weight matrices only, but params\[0\] "
    r"has shape \(2, 3, 4\)",
    "only support `original` and `match_rms_adamw`": r"adjust_lr_fn must be one of \(None, "
    r"'original', 'match_rms_adamw'\), got 'arbitrary'",
}

DEVIATIONS = {
    "a param group cannot have duplicate parameters": Deviation(
        ValueError,
        CONSTRUCTION,
        r"params\[1\] appears twice in the parameter list",
        "torch warns (UserWarning) and keeps the duplicate; minioptim refuses it, because a "
        "flat buffer holds each parameter once and the second copy would not be updated",
    ),
    "does not support complex parameters": Deviation(
        TypeError,
        CONSTRUCTION,
        r"params\[0\] has dtype torch\.complex64; only floating-point parameters",
        "torch's Muon raises RuntimeError at the first step; every minioptim optimizer "
        "refuses a complex parameter when it is given (a TypeError: the dtype is wrong)",
    ),
    "`fused` does not support `differentiable`": Deviation(
        ValueError,
        CONSTRUCTION,
        r"differentiable=True is not supported by minioptim; leave it False",
        "minioptim refuses differentiable=True whatever the other flags (a ValueError, "
        "checked before them), where torch refuses its combination with fused",
    ),
}

NOT_APPLICABLE: dict[str, str] = {}  # desc -> why; none in torch 2.13: every input runs


@dataclass(frozen=True)
class Input:
    name: str  # the optimizer's class name, in torch.optim and minioptim
    error_input: Any  # torch's ErrorOptimizerInput
    cuda_only: bool

    @property
    def desc(self) -> str:
        return self.error_input.optimizer_error_input.desc

    def arguments(self) -> tuple[Any, dict[str, Any]]:
        """``(params, kwargs)``, with one 2-d parameter where torch gives none."""
        given = self.error_input.optimizer_error_input
        params = given.params
        if params is None:
            params = [torch.nn.Parameter(torch.randn(2, 3))]
        return params, given.kwargs


def collect() -> list[Input]:
    """Every error input of the mirrored optimizers: the CPU ones, then the CUDA-only ones."""
    infos = {info.name: info for info in common_optimizers.optim_db}
    missing = set(MIRRORED) - set(infos)
    assert not missing, f"optim_db has no {sorted(missing)}: update MIRRORED"
    inputs = []
    for name in MIRRORED:
        generate = infos[name].optim_error_inputs_func
        on_cpu = generate(device="cpu", dtype=torch.float32)
        with mock.patch.object(common_optimizers, "_get_device_type", lambda device: "cuda"):
            on_cuda = generate(device="cpu", dtype=torch.float32)
        cpu_descs = {e.optimizer_error_input.desc for e in on_cpu}
        inputs += [Input(name, e, cuda_only=False) for e in on_cpu]
        inputs += [
            Input(name, e, cuda_only=True)
            for e in on_cuda
            if e.optimizer_error_input.desc not in cpu_descs
        ]
    return inputs


INPUTS = collect()


def param(case: Input, index: int):
    slug = re.sub(r"\W+", "-", case.desc).strip("-")
    marks = ()
    if case.desc in NOT_APPLICABLE:
        marks = pytest.mark.skip(reason=f"not applicable: {NOT_APPLICABLE[case.desc]}")
    tag = "-cuda-only" if case.cuda_only else ""
    return pytest.param(case, id=f"{case.name}-{index:02d}-{slug}{tag}", marks=marks)


def expect(error: type[BaseException], message: str):
    if issubclass(error, Warning):
        return pytest.warns(error, match=message)
    return pytest.raises(error, match=message)


def run(cls, case: Input, error: type[BaseException], on: Any, message: str):
    """torch's test_errors for one input: the error at construction or at step()."""
    params, kwargs = case.arguments()
    if on == CONSTRUCTION:
        with expect(error, message) as caught:
            cls(params, **kwargs)
    elif on == STEP:
        optimizer = cls(params, **kwargs)
        with expect(error, message) as caught:
            optimizer.step()
    else:
        raise NotImplementedError(f"unknown error_on {on}")
    return caught


@pytest.mark.parametrize("case", [param(c, i) for i, c in enumerate(INPUTS)])
def test_minioptim_raises_as_torch_does(case):
    expected = case.error_input
    deviation = DEVIATIONS.get(case.desc)
    if deviation is not None:
        error, on, message = deviation.error, deviation.on, deviation.message
    else:
        error, on = expected.error_type, expected.error_on
        message = OWN_MESSAGES.get(case.desc, expected.error_regex)
    caught = run(getattr(minioptim, case.name), case, error, on, message)
    if case.desc in OWN_MESSAGES and not issubclass(error, Warning):
        assert not re.search(expected.error_regex, str(caught.value)), (
            f"torch's regex matches minioptim's message: drop {case.desc!r} from OWN_MESSAGES"
        )


@pytest.mark.parametrize("case", [param(c, i) for i, c in enumerate(INPUTS)])
def test_torch_raises_the_same_for_the_adapted_inputs(case):
    """The adaptations (a parameter for ``params=None``, CPU tensors for CUDA-only inputs)
    keep each input's meaning: torch.optim itself still raises as its registry says."""
    expected = case.error_input
    run(
        getattr(torch.optim, case.name),
        case,
        expected.error_type,
        expected.error_on,
        expected.error_regex,
    )


def test_every_table_entry_names_an_input_torch_has():
    descs = {case.desc for case in INPUTS}
    for table in (OWN_MESSAGES, DEVIATIONS, NOT_APPLICABLE):
        assert set(table) <= descs, f"stale entries: {sorted(set(table) - descs)}"
    assert not set(OWN_MESSAGES) & set(DEVIATIONS), "a deviation carries its own message"


def test_the_registry_is_what_this_file_was_written_for():
    """torch 2.13: 40 inputs for the CPU (7 SGD, 12 Adam, 12 AdamW, 9 Muon) and 2 CUDA-only
    ones each for Adam and AdamW. A new torch may add some: they run all the same, and this
    count is then updated after reading them."""
    count: dict[tuple[str, bool], int] = {}
    for case in INPUTS:
        count[case.name, case.cuda_only] = count.get((case.name, case.cuda_only), 0) + 1
    assert count == {
        ("SGD", False): 7,
        ("Adam", False): 12,
        ("Adam", True): 2,
        ("AdamW", False): 12,
        ("AdamW", True): 2,
        ("Muon", False): 9,
    }
