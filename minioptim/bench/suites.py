"""The benchmarks. Each suite asks one question and answers with records (plain dicts).

- ``steps``: ``step()`` of every contender of an optimizer on a parameter set.
- ``zero-grad``: ``zero_grad()`` and the backward pass that refills the gradients.
- ``sweeps``: step time as the same parameters are split into more tensors, and as the
  model grows.
- ``host-overhead``: the host time of one ``step()`` on 10 to 10,000 small tensors, and
  the line ``fixed + per tensor`` through it.
- ``training``: one iteration of a small transformer (zero_grad, forward, backward,
  step) with minioptim's AdamW and torch's: :mod:`minioptim.bench.training`.
- ``memory``: bytes per parameter (parameters, gradients, state, master copies) of SGD,
  Adam, Lion, Muon and Adafactor in each precision mode, checked against an independent
  measurement (:func:`minioptim.bench.memory.precision_records`).
- ``precision``: ``step()`` on bfloat16 parameters in the precision modes
  (:data:`PRECISION_MODES`), each on minioptim's default path and its compiled one, with
  its GB/s from the bytes that mode must move
  (:meth:`~minioptim.bench.contenders.Optimizer.step_bytes`), against torch's plain
  bfloat16 steps for reference.

Every contender of a comparison lives in the same process, gets its own copy of the same
(seeded) parameters and gradients, and is timed round-robin with the others
(:func:`~minioptim.bench.measure.round_robin`). Gradients stay fixed between steps: the
suites time the optimizer, not a model (except ``training``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

import minioptim

from . import cases, memory, training
from .cases import Shape, make_params, numel, random_tensors
from .contenders import OPTIMIZERS, Contender, Optimizer
from .measure import (
    Timing,
    bandwidth,
    default_device,
    environment,
    fit_overhead,
    rotations,
    time_call,
)

Record = dict[str, Any]  # one measurement: plain data, as written to JSON
SUITES = ("steps", "zero-grad", "sweeps", "training", "host-overhead", "memory", "precision")
#: The ``precision`` suite's modes, on parameters of :data:`PRECISION_DTYPE`.
PRECISION_MODES = ("stochastic", "kahan", "master")
PRECISION_DTYPE = "bfloat16"


def build(contenders: list[Contender], values, grads, timing: Timing) -> dict[str, Any]:
    """Each contender's optimizer on its own copy of the parameters, warmed up.

    The first step creates the state; ``timing.warmup`` more follow. Contenders that the
    device or dtype lacks (``fused=True`` where torch has no such kernel) are skipped,
    with a message.
    """
    built = {}
    for contender in contenders:
        try:
            optimizer = contender.build(make_params(values, grads))
            for _ in range(1 + timing.warmup):
                optimizer.step()
        except (RuntimeError, ValueError, NotImplementedError) as error:
            timing.say(f"  skipping {contender.label}: {str(error).splitlines()[0]}")
            continue
        built[contender.label] = optimizer
    return built


# -- steps ------------------------------------------------------------------------------------


def steps(
    set_name: str,
    values: list[torch.Tensor],
    grads: list[torch.Tensor],
    optimizer: Optimizer,
    timing: Timing,
    copy_gbps: float,
    contenders: list[Contender],
    kind: str = "step",
) -> list[Record]:
    """Time ``step()`` of ``contenders`` of ``optimizer`` on one parameter set.

    Each contender gets its own copy of ``values`` and ``grads``. Before the timing, one
    more step of each contender, taken alone, shows the peak memory that a step
    allocates on top of the parameters, gradients and state. Each record's GB/s count
    the bytes its contender's step must move, in its precision mode
    (:meth:`~minioptim.bench.contenders.Optimizer.step_bytes`); ``kind``: the records'.
    """
    shapes = [tuple(v.shape) for v in values]
    dtype = values[0].dtype
    # p, g and 2 states each, at least as large as float32's (master weights and state)
    needed = 4 * max(dtype.itemsize, 4) * numel(shapes) * len(contenders)
    free = memory.available_bytes(timing.device)
    if free is not None and needed > free:
        timing.say(f"  skipping: needs ~{needed / 2**30:.1f} GiB, {free / 2**30:.1f} free")
        return []
    gc.collect()  # free the previous benchmark's tensors before measuring memory
    built = build(contenders, values, grads, timing)
    peak = {label: memory.peak_of(opt.step, timing.device) for label, opt in built.items()}
    samples = timing.round_robin({label: opt.step for label, opt in built.items()})
    torch_labels = {c.label for c in contenders if c.torch}
    torch_times = {label: s.seconds for label, s in samples.items() if label in torch_labels}
    best = min(torch_times, key=torch_times.get) if torch_times else None
    modes = {c.label: c.precision for c in contenders}
    n_params = numel(shapes)
    records = []
    for label, opt in built.items():
        seconds = samples[label].seconds
        per_param = optimizer.step_bytes(dtype, modes[label])
        gbps = per_param * n_params / seconds / 1e9
        records.append(
            dict(
                kind=kind,
                set=set_name,
                optimizer=optimizer.name,
                dtype=str(dtype).removeprefix("torch."),
                contender=label,
                precision=modes[label],
                torch=label in torch_labels,
                n_tensors=len(shapes),
                n_params=n_params,
                ms=seconds * 1e3,
                host_ms=samples[label].host_seconds * 1e3,
                best_torch=best,
                vs_torch=seconds / torch_times[best] if best else math.nan,
                bytes_per_param=per_param,
                gbps=gbps,
                pct_copy=100 * gbps / copy_gbps,
                state_bytes=memory.state_bytes(opt),
                step_peak_bytes=peak[label],
            )
        )
    return records


# -- zero_grad --------------------------------------------------------------------------------


class ZeroGradContender:
    """One way of zeroing gradients, followed by a backward pass that refills them.

    The backward of ``sum((p * c).sum())`` gives every parameter the gradient ``c``, as a
    fresh tensor. After ``zero_grad(set_to_none=True)`` autograd hands that tensor to
    ``p.grad`` (allocated by the backward); after zeroing, it is added into the existing
    ``p.grad``, in place, so minioptim's gradients stay views of the flat buffer.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, coefs: list[torch.Tensor], **kw) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.coefs = coefs
        self.kw = kw

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(**self.kw)

    def backward(self) -> None:
        sum((p * c).sum() for p, c in zip(self.params, self.coefs, strict=True)).backward()


def zero_grad(set_name: str, shapes: list[Shape], timing: Timing) -> list[Record]:
    """Time ``zero_grad()`` and the backward pass after it, for each way of zeroing.

    ``set_to_none=True`` makes ``zero_grad`` almost free but moves work into the next
    backward, so the records hold both times and their sum.
    """
    seed, device = timing.seed, timing.device
    values, grads, coefs = (random_tensors(shapes, seed + i, device) for i in range(3))

    def sgd(foreach: bool) -> torch.optim.Optimizer:
        return torch.optim.SGD(make_params(values, grads), lr=1e-3, foreach=foreach)

    mine = minioptim.SGD(make_params(values, grads), lr=1e-3)
    runners = {
        "minioptim zero_grad()": ZeroGradContender(mine, coefs),
        "torch set_to_none=True": ZeroGradContender(sgd(False), coefs, set_to_none=True),
        "torch set_to_none=False": ZeroGradContender(sgd(False), coefs, set_to_none=False),
        "torch set_to_none=False foreach": ZeroGradContender(sgd(True), coefs, set_to_none=False),
    }
    for runner in runners.values():
        for _ in range(timing.warmup + 1):
            runner.zero_grad()
            runner.backward()
    samples = {label: ([], []) for label in runners}  # round-robin: zero_grad, then backward
    for label in rotations(list(runners), timing.repeats):
        samples[label][0].append(time_call(runners[label].zero_grad, timing.device).seconds)
        samples[label][1].append(time_call(runners[label].backward, timing.device).seconds)
    n_params = numel(shapes)
    records = []
    for label, (zeros, backwards) in samples.items():
        zero, backward = statistics.median(zeros), statistics.median(backwards)
        writes = label != "torch set_to_none=True"
        records.append(
            dict(
                kind="zero_grad",
                set=set_name,
                contender=label,
                n_tensors=len(shapes),
                n_params=n_params,
                ms=zero * 1e3,
                backward_ms=backward * 1e3,
                total_ms=(zero + backward) * 1e3,
                gbps=4 * n_params / zero / 1e9 if writes else math.nan,
            )
        )
    return records


# -- sweeps -----------------------------------------------------------------------------------


def tensor_count_points(scale: float) -> list[tuple[int, int]]:
    """10 to 10,000 tensors sharing ~4.2M parameters (times ``scale``)."""
    total = max(1, round(2**22 * scale))
    counts = [10, 30, 100, 300, 1000, 3000, 10_000]
    return [(count, total) for count in counts if count <= total]


def size_points(scale: float, largest: int = 2**24) -> list[tuple[int, int]]:
    """65K parameters to ``largest`` (times ``scale``), 4x apart, in 100 tensors."""
    top = int(math.log2(largest))
    sizes = [max(1, round(2**power * scale)) for power in range(16, top + 1, 2)]
    return [(min(100, size), size) for size in sizes]


#: The size sweep's largest model, by device type: 16.8M parameters, where a CPU is long
#: past its caches; on a GPU, 268M, where a step takes milliseconds and the host's
#: overhead no longer hides the memory bandwidth.
SWEEP_LARGEST = {"cpu": 2**24, "cuda": 2**28}


def sweep(
    kind: str,
    optimizer: Optimizer,
    points: list[tuple[int, int]],
    timing: Timing,
    compiled: bool = False,
) -> list[Record]:
    """Step time of each contender (not the reference; the compiled path if ``compiled``)
    at each (tensors, params) point. Every tensor of a point has ``params // tensors``
    elements; a point whose tensors do not fit in the device's free memory is skipped.
    """
    records = []
    contenders = optimizer.contenders(reference=False, compiled=compiled)
    for n_tensors, n_params in points:
        shapes = [(n_params // n_tensors,)] * n_tensors
        needed = 16 * numel(shapes) * len(contenders)  # float32 p, g and 2 states each
        free = memory.available_bytes(timing.device)
        if free is not None and needed > free:
            timing.say(f"  skipping {n_params} parameters: needs ~{needed / 2**30:.1f} GiB")
            continue
        values = random_tensors(shapes, timing.seed, timing.device)
        grads = random_tensors(shapes, timing.seed + 1, timing.device)
        built = build(contenders, values, grads, timing)
        del values, grads
        samples = timing.round_robin({label: opt.step for label, opt in built.items()})
        for label, sample in samples.items():
            records.append(
                dict(
                    kind=kind,
                    optimizer=optimizer.name,
                    contender=label,
                    n_tensors=n_tensors,
                    n_params=numel(shapes),
                    ms=sample.seconds * 1e3,
                )
            )
    return records


# -- host overhead ----------------------------------------------------------------------------

HOST_COUNTS = (10, 100, 1000, 10_000)


def host_overhead(
    optimizer: Optimizer, timing: Timing, counts: Iterable[int] = HOST_COUNTS, size: int = 64
) -> list[Record]:
    """Host time of one ``step()`` on ``count`` tensors of ``size`` elements, and its fit.

    minioptim against torch's foreach and fused versions (or the bench's foreach
    baseline). The tensors are so small that the device's work is negligible: what is
    left is Python and launch overhead, the time the host needs before the device can
    start the next step. One ``host_fit`` record per contender gives the least-squares
    line ``fixed_us + per_tensor_us * n``.
    """
    contenders = optimizer.contenders(reference=False, only=("foreach", "fused"))
    records = []
    for count in counts:
        shapes = [(size,)] * count
        values = random_tensors(shapes, timing.seed, timing.device)
        grads = random_tensors(shapes, timing.seed + 1, timing.device)
        built = build(contenders, values, grads, timing)
        samples = timing.round_robin({label: opt.step for label, opt in built.items()})
        for label, sample in samples.items():
            records.append(
                dict(
                    kind="host",
                    optimizer=optimizer.name,
                    contender=label,
                    n_tensors=count,
                    size=size,
                    host_us=sample.host_seconds * 1e6,
                    device_us=sample.seconds * 1e6,
                )
            )
    for label in dict.fromkeys(r["contender"] for r in records):
        points = [(r["n_tensors"], r["host_us"]) for r in records if r["contender"] == label]
        if len(points) >= 2:
            fixed, per_tensor = fit_overhead(*map(list, zip(*points, strict=True)))
            records.append(
                dict(
                    kind="host_fit",
                    optimizer=optimizer.name,
                    contender=label,
                    fixed_us=fixed,
                    per_tensor_us=per_tensor,
                )
            )
    return records


# -- everything -------------------------------------------------------------------------------


#: ``--quick``: every optimizer in float32 and bfloat16 on the set where the tensor count
#: decides (many-small, also Muon's) and on the one where the memory bandwidth does (llm),
#: and the host overhead; each against the fastest torch variants only (foreach, fused)
#: and minioptim's default and compiled paths. Sized for an H100/H200: about 40 s with a
#: warm compiler cache, 90 s with a cold one (estimated from an H200's timings).
QUICK: dict[str, Any] = dict(
    suites=("steps", "host-overhead"),
    sets=("many-small", "llm"),
    optimizers=tuple(OPTIMIZERS),
    dtypes=("float32", "bfloat16"),
    repeats=5,
    warmup=1,
    reference=False,
    torch_variants=("foreach", "fused"),
)


def run(
    sets: Iterable[str] = tuple(cases.SETS),
    optimizers: Iterable[str] = tuple(OPTIMIZERS),
    *,
    suites: Iterable[str] = ("steps", "zero-grad", "sweeps"),
    repeats: int = 10,
    warmup: int = 2,
    scale: float = 1.0,
    device: str | None = None,
    dtypes: Iterable[str] = ("float32",),
    reference: bool = True,
    compiled: bool = True,
    torch_variants: tuple[str, ...] = (),
    triad_elements: int = 2**26,
    verbose: bool = True,
    keep: Callable[[Record], Any] | None = None,
) -> list[Record]:
    """Run the ``suites`` and return their records, after two that describe the run.

    The first record (``kind="environment"``) says where and when; the second
    (``"bandwidth"``) holds the copy and triad bandwidths, measured first. ``steps`` runs
    every optimizer of ``optimizers`` on every set of ``sets`` in every dtype (Muon on
    sets of matrices only); ``zero-grad`` runs on every set; ``sweeps`` times Adam (or the
    first element-wise optimizer given), ``host-overhead`` every element-wise one;
    ``training`` is one case, shrunk with ``scale``; ``memory`` runs on every set;
    ``precision`` runs minioptim's element-wise optimizers of ``optimizers`` on every set
    in bfloat16, whatever ``dtypes`` says (:func:`races`).

    The contenders of ``steps`` and ``sweeps``: minioptim's default path, its reference
    path (``reference``) and its compiled path (``compiled``, element-wise optimizers),
    and torch's variants (those ending with a word of ``torch_variants``, or all). Those
    of ``precision``: minioptim in each of :data:`PRECISION_MODES`, on its default path
    and (``compiled``) its compiled one, and the same torch variants.

    ``keep`` is called with each record as soon as it is measured (the command line
    appends it to a file), so an interrupted run leaves what it measured; progress goes
    to stderr unless ``verbose=False``.
    """
    sets, optimizers, suites = list(sets), list(optimizers), list(suites)
    for names, known in ((sets, cases.SETS), (optimizers, OPTIMIZERS), (suites, SUITES)):
        unknown = set(names) - set(known)
        if unknown:
            raise ValueError(f"unknown {sorted(unknown)}; choose from {', '.join(known)}")
    timing = Timing(device or default_device(), repeats, warmup, verbose=verbose)
    elementwise = [OPTIMIZERS[name] for name in optimizers if not OPTIMIZERS[name].matrices]
    records: list[Record] = []
    began = time.perf_counter()

    def add(new: list[Record]) -> None:
        for record in new:
            records.append(record)
            if keep is not None:
                keep(record)

    def say(message: str) -> None:
        timing.say(f"[{time.perf_counter() - began:5.0f} s] {message}")

    with frozen_heap():
        found = bandwidth(timing.device, triad_elements)
        copy_gbps = found["copy"] / 1e9
        say(f"copy {copy_gbps:.1f} GB/s, triad {found['triad'] / 1e9:.1f} GB/s")
        add([
            dict(kind="environment", **environment(timing.device), scale=scale, repeats=repeats),
            dict(
                kind="bandwidth",
                copy_gbps=copy_gbps,
                triad_gbps=found["triad"] / 1e9,
                elements=triad_elements,
            ),
        ])  # fmt: skip
        comparisons = [
            (set_name, dtype, name, suite)
            for set_name in sets
            for dtype in dict.fromkeys([*dtypes, PRECISION_DTYPE])
            for suite in ("steps", "precision")
            for name in optimizers
            if suite in suites and races(suite, cases.SETS[set_name], dtype, dtypes, name)
        ]
        done = 0
        for set_name in sets:
            shapes = cases.scaled(cases.SETS[set_name].shapes(), scale)
            for dtype in dict.fromkeys(d for s, d, _, _ in comparisons if s == set_name):
                values = random_tensors(shapes, timing.seed, timing.device, getattr(torch, dtype))
                grads = random_tensors(shapes, timing.seed + 1, timing.device, values[0].dtype)
                for s, d, name, suite in comparisons:
                    if (s, d) != (set_name, dtype):
                        continue
                    done += 1
                    modes = " in precision modes" if suite == "precision" else ""
                    say(f"({done}/{len(comparisons)}) {set_name}: {name} {dtype}{modes}")
                    optimizer = OPTIMIZERS[name]
                    if suite == "steps":
                        on_cuda = torch.device(timing.device).type == "cuda"
                        racing = optimizer.contenders(
                            reference, torch_variants, compiled, captured=on_cuda
                        )
                        kind = "step"
                    else:
                        racing = optimizer.precision_contenders(
                            PRECISION_MODES, torch_variants, compiled
                        )
                        kind = "precision"
                    add(steps(set_name, values, grads, optimizer, timing, copy_gbps, racing, kind))
                del values, grads
            if "zero-grad" in suites:
                say(f"{set_name}: zero_grad")
                add(zero_grad(set_name, shapes, timing))
            if "memory" in suites:
                say(f"{set_name}: bytes per parameter by precision mode")
                found = memory.precision_records(shapes, device=timing.device)
                add([dict(r, set=set_name) for r in found])
        if "sweeps" in suites and elementwise:
            main = OPTIMIZERS["adam"] if "adam" in optimizers else elementwise[0]
            largest = SWEEP_LARGEST.get(torch.device(timing.device).type, 2**24)
            say(f"sweeps: {main.name}")
            add(sweep("sweep_tensors", main, tensor_count_points(scale), timing, compiled))
            add(sweep("sweep_size", main, size_points(scale, largest), timing, compiled))
        if "training" in suites:
            case = training.TrainingCase.at(scale)
            say(f"training: {case}")
            add(training.suite(case, timing))
        for optimizer in elementwise if "host-overhead" in suites else ():
            say(f"host overhead: {optimizer.name}")
            add(host_overhead(optimizer, timing, HOST_COUNTS))
    say("done")
    return records


def races(suite: str, parameters: cases.ParameterSet, dtype: str, dtypes, name: str) -> bool:
    """Whether optimizer ``name`` races on ``parameters`` in ``dtype`` in ``suite``:
    ``steps`` in each of ``dtypes`` (Muon on sets of matrices only); ``precision`` in
    :data:`PRECISION_DTYPE`, minioptim's own memory-bound optimizers (a student's class
    takes no ``precision=``; Muon's step is matrix products)."""
    optimizer = OPTIMIZERS[name]
    if suite == "steps":
        return dtype in dtypes and (parameters.matrices or not optimizer.matrices)
    return dtype == PRECISION_DTYPE and optimizer.takes_impl and optimizer.arrays is not None


@contextlib.contextmanager
def frozen_heap():
    """Collect garbage once, then leave every object that exists out of the collections
    inside the block (:func:`gc.freeze`): with torch imported, a full collection takes a
    good fraction of a second, and :func:`steps` collects before measuring memory."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
