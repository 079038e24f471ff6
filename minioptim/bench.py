"""Time minioptim's ``step()`` and ``zero_grad()`` against torch.optim.

Run it as ``python -m minioptim.bench`` (or ``make bench``); ``--help`` lists the options.
From Python (the book does this)::

    from minioptim import bench
    rows = bench.run(scale=0.01, repeats=3)
    print(bench.format_table(rows))
    bench.plot(rows)

How the numbers are taken:

- **Contenders.** For each optimizer (SGD with momentum 0.9, Adam, AdamW, SignSGD with
  momentum 0.9): minioptim with ``impl="fast"`` and ``impl="reference"``, and torch.optim
  with ``foreach=False`` (a Python loop over tensors), ``foreach=True`` (one kernel per
  operation over lists of tensors) and ``fused=True`` (one kernel for the whole rule).
  torch has no SignSGD, so minioptim is compared with :class:`ForLoopSignSGD`, written here.
- **Same work.** Every contender gets its own copy of the same parameters and gradients
  (random, seeded). Gradients stay fixed between steps: we time the optimizer, not a model.
- **Fair timing.** All contenders of a comparison live in one process and are timed in
  turn, round-robin, one step each, for ``repeats`` rounds; we report the median. Before
  that, each contender takes two steps alone (to measure memory) and ``warmup`` more.
  On CUDA and MPS the device is synchronized before and after each step.
- **Roofline.** An optimizer step is memory-bound: it reads and writes each parameter's
  value, gradient and state once (:data:`BYTES_PER_PARAM`) and does little arithmetic. We
  compare the achieved bytes per second with a triad ``a = b + s * c`` measured in the
  same run: about the best any element-wise kernel can do on this machine.
- **Memory.** The optimizer state (bytes of all state tensors) and the peak memory a step
  allocates on top of what existed before it (see :class:`PeakMemory` for how, and the
  limits of measuring this on a CPU).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

import minioptim

Shape = tuple[int, ...]
Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]

SETS = ("many-small", "mixed", "few-large")
OPTIMIZERS = ("sgd", "adam", "adamw", "signsgd")
MiB = 2**20

# -- parameter sets ---------------------------------------------------------------------------


def many_small_shapes() -> list[Shape]:
    """2000 tensors of 64 x 64 (8.2M parameters): where per-tensor overhead dominates."""
    return [(64, 64)] * 2000


def convnet_shapes(layers_per_stage: tuple[int, ...] = (18, 18, 12, 2)) -> list[Shape]:
    """A convnet-like mix: 164 tensors, 14.3M parameters, from 64 to 2.4M elements each.

    A 7x7 stem, then stages of 64, 128, 256 and 512 channels made of 3x3 convolutions,
    each followed by a batch norm (weight and bias), a 1x1 convolution where the width
    changes, and a final linear classifier with 1000 outputs.
    """
    shapes: list[Shape] = [(64, 3, 7, 7), (64,), (64,)]
    c_in = 64
    for width, layers in zip((64, 128, 256, 512), layers_per_stage, strict=True):
        if width != c_in:
            shapes += [(width, c_in, 1, 1), (width,), (width,)]
        for _ in range(layers):
            shapes += [(width, c_in, 3, 3), (width,), (width,)]
            c_in = width
    return shapes + [(1000, c_in), (1000,)]


def few_large_shapes() -> list[Shape]:
    """4 tensors of 2048 x 2048 (16.8M parameters): pure memory bandwidth."""
    return [(2048, 2048)] * 4


SHAPES: dict[str, Callable[[], list[Shape]]] = {
    "many-small": many_small_shapes,
    "mixed": convnet_shapes,
    "few-large": few_large_shapes,
}


def scaled(shapes: list[Shape], scale: float) -> list[Shape]:
    """Shrink (or grow) every tensor by ``scale``, keeping the number of tensors.

    At ``scale != 1`` a tensor of ``n`` elements becomes a 1-d tensor of
    ``max(1, round(n * scale))``: the optimizers are element-wise, shapes do not matter.
    """
    if scale == 1:
        return shapes
    return [(max(1, round(math.prod(shape) * scale)),) for shape in shapes]


def numel(shapes: Iterable[Shape]) -> int:
    """Total number of elements of tensors with these shapes."""
    return sum(math.prod(shape) for shape in shapes)


def random_tensors(shapes: list[Shape], seed: int, device: str) -> list[torch.Tensor]:
    """Standard normal tensors, the same for a given seed on every device."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(device) for shape in shapes]


def make_params(values: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fresh leaf parameters: copies of ``values``, with copies of ``grads`` as ``.grad``."""
    params = []
    for value, grad in zip(values, grads, strict=True):
        p = value.clone().requires_grad_()
        p.grad = grad.clone()
        params.append(p)
    return params


# -- contenders -------------------------------------------------------------------------------


class ForLoopSignSGD(torch.optim.Optimizer):
    r"""SignSGD with momentum (Signum), one parameter at a time: the baseline for SignSGD.

    For each parameter :math:`p` with gradient :math:`g`, as minioptim's rule:

    .. math::

        m \leftarrow \mu m + (1 - \mu) g, \qquad
        p \leftarrow p (1 - \eta \lambda) - \eta \operatorname{sign}(m)
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, beta, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                m = state["momentum_buffer"]
                m.mul_(beta).add_(p.grad, alpha=1 - beta)
                if decay != 0:
                    p.mul_(1 - lr * decay)
                p.add_(torch.sign(m), alpha=-lr)


#: Hyper-parameters of each benchmarked optimizer (the same for every contender).
HYPER: dict[str, dict[str, Any]] = {
    "sgd": dict(lr=1e-3, momentum=0.9),
    "adam": dict(lr=1e-3),
    "adamw": dict(lr=1e-3, weight_decay=1e-2),
    "signsgd": dict(lr=1e-3, momentum=0.9, weight_decay=1e-2),
}

#: The memory traffic of one ideal step: bytes per float32 parameter, and what they are.
BYTES_PER_PARAM: dict[str, tuple[int, str]] = {
    "sgd": (20, "read p,g,m; write p,m = 5 x 4 B"),
    "adam": (28, "read p,g,m,v; write p,m,v = 7 x 4 B"),
    "adamw": (28, "read p,g,m,v; write p,m,v = 7 x 4 B"),
    "signsgd": (20, "Signum: read p,g,m; write p,m = 5 x 4 B (12 B without momentum)"),
    "zero_grad": (4, "write g = 1 x 4 B"),
}

MINIOPTIM_CLASSES = {
    "sgd": minioptim.SGD,
    "adam": minioptim.Adam,
    "adamw": minioptim.AdamW,
    "signsgd": minioptim.SignSGD,
}
TORCH_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
TORCH_VARIANTS = {
    "torch for-loop": dict(foreach=False),
    "torch foreach": dict(foreach=True),
    "torch fused": dict(fused=True),
}


def contenders(optimizer: str, reference: bool = True) -> dict[str, Factory]:
    """Label -> function that builds that contender's optimizer on a list of parameters."""
    hyper = HYPER[optimizer]
    mine = MINIOPTIM_CLASSES[optimizer]
    result: dict[str, Factory] = {"minioptim fast": lambda ps: mine(ps, impl="fast", **hyper)}
    if reference:
        result["minioptim reference"] = lambda ps: mine(ps, impl="reference", **hyper)
    if optimizer == "signsgd":
        result["for-loop (bench)"] = lambda ps: ForLoopSignSGD(ps, **hyper)
        return result
    theirs = TORCH_CLASSES[optimizer]
    for label, flags in TORCH_VARIANTS.items():
        result[label] = lambda ps, flags=flags: theirs(ps, **hyper, **flags)
    return result


def baseline(optimizer: str) -> str:
    """The contender every other one is compared with."""
    return "for-loop (bench)" if optimizer == "signsgd" else "torch fused"


def build(factories: dict[str, Factory], values, grads) -> dict[str, torch.optim.Optimizer]:
    """Build each contender on its own copy of the parameters; skip those the device lacks."""
    built = {}
    for label, factory in factories.items():
        try:
            built[label] = factory(make_params(values, grads))
        except (RuntimeError, ValueError) as error:  # e.g. fused=True on a device without it
            print(f"  skipping {label}: {error}", file=sys.stderr)
    return built


# -- timing and memory ------------------------------------------------------------------------


def default_device() -> str:
    """``"cuda"`` if a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str) -> None:
    """Wait for the device's queued kernels (GPU work is asynchronous)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device.startswith("mps"):
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def round_robin(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    device: str,
    summary: Callable[[list[float]], float] = statistics.median,
) -> dict[str, float]:
    """Median (or ``summary``) seconds per call of each function, timed in turn.

    Each function is called ``repeats`` times. The starting one rotates from round to
    round, so none always runs right after the same neighbour (whose traffic may have
    warmed or evicted the caches).
    """
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(fns[name], device))
    return {name: summary(times) for name, times in samples.items()}


class PeakMemory:
    """Peak memory allocated inside a ``with`` block, on top of what existed before it.

    - CUDA: exact, from the caching allocator (``torch.cuda.max_memory_allocated``).
    - CPU on Linux: the resident set's high-water mark (``VmHWM``), reset before the block
      through ``/proc/self/clear_refs``. It counts pages the process had to touch anew, so
      memory that malloc keeps after ``free`` and hands out again would hide allocations;
      ``malloc_trim`` gives that memory back to the system first. Page-granular, and it
      includes whatever else the process allocates meanwhile.
    - Elsewhere: the growth of ``getrusage``'s lifetime peak, which is 0 unless the block
      goes above every earlier peak: a lower bound.

    Python's garbage collector is paused inside the block: a collection there could free
    earlier benchmarks' tensors and hide the block's own allocations. ``bytes`` holds the
    result after the block; ``None`` where nothing can measure it (MPS).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        self.gc_enabled = gc.isenabled()
        gc.disable()  # a collection inside the block would free unrelated memory
        synchronize(self.device)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        elif self.device == "cpu":
            _malloc_trim()
            self.use_proc = _reset_rss_peak()
            self.before = _proc_status("VmRSS") if self.use_proc else _lifetime_peak_rss()
        return self

    def __exit__(self, *exc_info: object) -> None:
        synchronize(self.device)
        if self.gc_enabled:
            gc.enable()
        if self.device.startswith("cuda"):
            self.bytes = torch.cuda.max_memory_allocated() - self.before
        elif self.device == "cpu":
            peak = _proc_status("VmHWM") if self.use_proc else _lifetime_peak_rss()
            self.bytes = max(0, peak - self.before)


def _malloc_trim() -> None:
    """Return the memory glibc's malloc holds in its free lists to the system, if glibc."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        pass


def _reset_rss_peak() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status(key: str) -> int:
    """A memory figure of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _lifetime_peak_rss() -> int:
    """The process's peak RSS so far, in bytes (kilobytes on Linux, bytes on macOS)."""
    import resource  # Unix only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state tensors (views of one buffer counted once)."""
    storages = {}
    for entry in optimizer.state.values():
        for value in entry.values():
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def triad_bandwidth(device: str, elements: int = 2**26, repeats: int = 20) -> float:
    """Bytes per second of ``a = b + s * c`` on float32 arrays, counting 3 x 4 bytes/element.

    This is STREAM's triad, with STREAM's conventions: the best of ``repeats`` runs, and
    arrays (256 MiB each by default) larger than the caches. It is what the memory system
    delivers to a simple element-wise kernel: the bound for an optimizer step. Two reasons
    a step can still beat it: a CPU reads ``a`` before writing it (write-allocate), so the
    triad really moves 16 bytes per element, while an in-place update writes only what it
    read; and a step's smaller working set may partly stay in a large cache.
    """
    b, c = (torch.rand(elements, device=device) for _ in range(2))
    a = torch.empty_like(b)
    triad = {"triad": lambda: torch.add(b, c, alpha=0.5, out=a)}
    return 3 * 4 * elements / round_robin(triad, repeats, device, summary=min)["triad"]


# -- the benchmarks ---------------------------------------------------------------------------


def bench_steps(
    set_name: str,
    optimizer: str,
    shapes: list[Shape],
    *,
    device: str,
    repeats: int,
    warmup: int,
    triad: float,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time ``step()`` of every contender of ``optimizer`` on one parameter set.

    The first two steps of each contender, taken alone, measure memory: the first step
    creates the state, the second shows what a steady step allocates.
    """
    gc.collect()  # free the previous benchmark's tensors before measuring memory
    values = random_tensors(shapes, seed, device)
    grads = random_tensors(shapes, seed + 1, device)
    optimizers = build(contenders(optimizer), values, grads)
    del values, grads
    memory = {}
    for label, opt in optimizers.items():
        memory[label] = [_peak_of(opt.step, device) for _ in range(2)]
        for _ in range(warmup):
            opt.step()
    seconds = round_robin({label: opt.step for label, opt in optimizers.items()}, repeats, device)
    reference = seconds.get(baseline(optimizer), math.nan)
    per_param = BYTES_PER_PARAM[optimizer][0]
    rows = []
    for label, opt in optimizers.items():
        bytes_per_second = per_param * numel(shapes) / seconds[label]
        rows.append(
            dict(
                kind="step",
                set=set_name,
                optimizer=optimizer,
                contender=label,
                n_tensors=len(shapes),
                n_params=numel(shapes),
                ms=seconds[label] * 1e3,
                vs_baseline=seconds[label] / reference,
                bytes_per_param=per_param,
                gbps=bytes_per_second / 1e9,
                bound_pct=100 * bytes_per_second / triad,
                state_bytes=state_bytes(opt),
                first_step_peak_bytes=memory[label][0],
                step_peak_bytes=memory[label][1],
            )
        )
    return rows


def _peak_of(fn: Callable[[], Any], device: str) -> int | None:
    with PeakMemory(device) as peak:
        fn()
    return peak.bytes


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


def zero_grad_contenders(values, grads, coefs) -> dict[str, ZeroGradContender]:
    """minioptim's zero_grad (one fill) and torch.optim's, with and without set_to_none."""

    def torch_sgd(foreach: bool) -> torch.optim.Optimizer:
        return torch.optim.SGD(make_params(values, grads), lr=1e-3, foreach=foreach)

    mine = minioptim.SGD(make_params(values, grads), lr=1e-3)
    return {
        "minioptim zero_grad()": ZeroGradContender(mine, coefs),
        "torch set_to_none=True": ZeroGradContender(torch_sgd(False), coefs, set_to_none=True),
        "torch set_to_none=False": ZeroGradContender(torch_sgd(False), coefs, set_to_none=False),
        "torch set_to_none=False foreach": ZeroGradContender(
            torch_sgd(True), coefs, set_to_none=False
        ),
    }


def bench_zero_grad(
    set_name: str, shapes: list[Shape], *, device: str, repeats: int, warmup: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Time ``zero_grad()`` and the backward pass after it, for each way of zeroing.

    ``set_to_none=True`` makes ``zero_grad`` almost free but moves work into the next
    backward, so the rows report both times and their sum.
    """
    gc.collect()
    values = random_tensors(shapes, seed, device)
    grads = random_tensors(shapes, seed + 1, device)
    coefs = random_tensors(shapes, seed + 2, device)
    runners = zero_grad_contenders(values, grads, coefs)
    for runner in runners.values():
        for _ in range(warmup):
            runner.zero_grad()
            runner.backward()
    seconds = _paired_round_robin(runners, repeats, device)
    n_params = numel(shapes)
    rows = []
    for label, (zero, backward) in seconds.items():
        writes = label != "torch set_to_none=True"
        rows.append(
            dict(
                kind="zero_grad",
                set=set_name,
                optimizer="zero_grad",
                contender=label,
                n_tensors=len(shapes),
                n_params=n_params,
                ms=zero * 1e3,
                backward_ms=backward * 1e3,
                total_ms=(zero + backward) * 1e3,
                gbps=4 * n_params / zero / 1e9 if writes else math.nan,
            )
        )
    return rows


def _paired_round_robin(
    runners: dict[str, ZeroGradContender], repeats: int, device: str
) -> dict[str, tuple[float, float]]:
    """Median seconds of (zero_grad, backward) per runner, each zero_grad then its backward."""
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in runners}
    names = list(runners)
    for round_ in range(repeats):
        shift = round_ % len(names)
        for label in names[shift:] + names[:shift]:
            runner = runners[label]
            samples[label].append((timed(runner.zero_grad, device), timed(runner.backward, device)))
    return {
        label: tuple(statistics.median(column) for column in zip(*pairs, strict=True))
        for label, pairs in samples.items()
    }


def sweep(
    kind: str,
    optimizer: str,
    points: list[tuple[int, int]],
    *,
    device: str,
    repeats: int,
    warmup: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Step time of each contender (but minioptim's reference) at each (tensors, params) point.

    Every tensor of a point has ``params // tensors`` elements.
    """
    rows = []
    for n_tensors, n_params in points:
        shapes = [(n_params // n_tensors,)] * n_tensors
        gc.collect()
        values = random_tensors(shapes, seed, device)
        grads = random_tensors(shapes, seed + 1, device)
        optimizers = build(contenders(optimizer, reference=False), values, grads)
        del values, grads
        for opt in optimizers.values():
            for _ in range(max(warmup, 1)):  # at least the step that creates the state
                opt.step()
        steps = {label: opt.step for label, opt in optimizers.items()}
        for label, seconds in round_robin(steps, repeats, device).items():
            rows.append(
                dict(
                    kind=kind,
                    optimizer=optimizer,
                    contender=label,
                    n_tensors=n_tensors,
                    n_params=numel(shapes),
                    ms=seconds * 1e3,
                )
            )
        del optimizers, steps
    return rows


def tensor_count_points(scale: float) -> list[tuple[int, int]]:
    """10 to 10,000 tensors sharing ~4.2M parameters (times ``scale``)."""
    total = max(1, round(2**22 * scale))
    counts = [10, 30, 100, 300, 1000, 3000, 10_000]
    return [(count, total) for count in counts if count <= total]


def size_points(scale: float) -> list[tuple[int, int]]:
    """65K to 16.8M parameters (times ``scale``) in 100 tensors."""
    sizes = [max(1, round(2**power * scale)) for power in range(16, 25, 2)]
    return [(min(100, size), size) for size in sizes]


# -- running everything -----------------------------------------------------------------------


def environment(device: str) -> dict[str, Any]:
    """What the numbers depend on: versions, device, threads."""
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
    return dict(
        torch=torch.__version__,
        minioptim=minioptim.__version__,
        python=platform.python_version(),
        device=device,
        device_name=name or platform.machine(),
        threads=torch.get_num_threads(),
    )


def run(
    sets: Iterable[str] = SETS,
    optimizers: Iterable[str] = OPTIMIZERS,
    *,
    repeats: int = 10,
    warmup: int = 2,
    scale: float = 1.0,
    device: str | None = None,
    sweeps: bool = True,
    triad_elements: int = 2**26,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Run the benchmark and return its rows: one dict per measurement.

    Rows have a ``kind``: ``"triad"`` (one row, the bandwidth bound), ``"step"`` (one per
    set x optimizer x contender), ``"zero_grad"`` (one per set x way of zeroing) and, with
    ``sweeps``, ``"sweep_tensors"`` and ``"sweep_size"`` (Adam, or the first optimizer
    given, at each point of :func:`tensor_count_points` and :func:`size_points`).
    """
    device = device or default_device()
    sets, optimizers = list(sets), list(optimizers)
    for name, known in ((sets, SETS), (optimizers, OPTIMIZERS)):
        unknown = set(name) - set(known)
        if unknown:
            raise ValueError(f"unknown {sorted(unknown)}; choose from {', '.join(known)}")
    say = print if verbose else lambda *args, **kw: None
    triad = triad_bandwidth(device, triad_elements)
    say(f"triad a = b + s*c: {triad / 1e9:.1f} GB/s")
    rows: list[dict[str, Any]] = [dict(kind="triad", gbps=triad / 1e9, elements=triad_elements)]
    timing = dict(device=device, repeats=repeats, warmup=warmup)
    for set_name in sets:
        shapes = scaled(SHAPES[set_name](), scale)
        for optimizer in optimizers:
            say(f"{set_name}: {optimizer}", flush=True)
            rows += bench_steps(set_name, optimizer, shapes, triad=triad, **timing)
        say(f"{set_name}: zero_grad", flush=True)
        rows += bench_zero_grad(set_name, shapes, **timing)
    if sweeps and optimizers:
        optimizer = "adam" if "adam" in optimizers else optimizers[0]
        say(f"sweeps: {optimizer}", flush=True)
        rows += sweep("sweep_tensors", optimizer, tensor_count_points(scale), **timing)
        rows += sweep("sweep_size", optimizer, size_points(scale), **timing)
    return rows


# -- reporting --------------------------------------------------------------------------------


def format_table(rows: list[dict[str, Any]]) -> str:
    """The step and zero_grad results as text tables, one block per set and optimizer."""
    lines = []
    for row in rows:
        if row["kind"] == "triad":
            lines.append(f"memory-bandwidth bound: triad a = b + s*c at {row['gbps']:.1f} GB/s")
    for (set_name, optimizer), group in _groups(rows, "step").items():
        lines += ["", _heading(set_name, group[0]) + f" - {optimizer}"]
        lines.append(f"  bytes moved per parameter: {_bytes_model(optimizer)}")
        lines.append(
            f"  {'contender':<22}{'ms/step':>10}{'/' + _short(baseline(optimizer)):>11}"
            f"{'GB/s':>8}{'% triad':>9}{'state MiB':>11}{'peak 1st':>10}{'peak step':>11}"
        )
        for row in group:
            lines.append(
                f"  {row['contender']:<22}{row['ms']:>10.3f}{row['vs_baseline']:>10.2f}x"
                f"{row['gbps']:>8.1f}{row['bound_pct']:>8.0f}%{row['state_bytes'] / MiB:>11.1f}"
                f"{_mib(row['first_step_peak_bytes']):>10}{_mib(row['step_peak_bytes']):>11}"
            )
    for (set_name, _), group in _groups(rows, "zero_grad").items():
        lines += ["", _heading(set_name, group[0]) + " - zero_grad, then a backward pass"]
        lines.append(f"  bytes moved per parameter: {_bytes_model('zero_grad')}")
        lines.append(
            f"  {'contender':<33}{'zero_grad ms':>13}{'GB/s':>7}{'backward ms':>13}{'sum ms':>9}"
        )
        for row in group:
            gbps = "-" if math.isnan(row["gbps"]) else f"{row['gbps']:.1f}"
            lines.append(
                f"  {row['contender']:<33}{row['ms']:>13.3f}{gbps:>7}"
                f"{row['backward_ms']:>13.3f}{row['total_ms']:>9.3f}"
            )
    lines += [
        "",
        "/fused, /for-loop: time relative to that contender (below 1x: faster).",
        "% triad: achieved GB/s over the triad's; above 100%: see triad_bandwidth's docstring.",
        "peak 1st / peak step: MiB the first step (state included) / a later step allocates.",
    ]
    return "\n".join(lines)


def _groups(rows: list[dict[str, Any]], kind: str) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["kind"] == kind:
            groups.setdefault((row["set"], row["optimizer"]), []).append(row)
    return groups


def _heading(set_name: str, row: dict[str, Any]) -> str:
    return f"{set_name} ({row['n_tensors']} tensors, {row['n_params'] / 1e6:.2f}M params)"


def _bytes_model(optimizer: str) -> str:
    per_param, what = BYTES_PER_PARAM[optimizer]
    return f"{per_param} B ({what})"


def _short(label: str) -> str:
    return label.removeprefix("torch ").removesuffix(" (bench)")


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MiB:.1f}"


def plot(rows: list[dict[str, Any]], path: str | Path | None = None):
    """Two panels of the sweeps: step time against tensor count, and against size.

    Returns the matplotlib ``Figure`` (built without pyplot, so no backend is changed);
    also saved to ``path`` when given.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    by_count, by_size = fig.subplots(1, 2)
    for axes, kind, x in (
        (by_count, "sweep_tensors", "n_tensors"),
        (by_size, "sweep_size", "n_params"),
    ):
        series: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            if row["kind"] == kind:
                series.setdefault(row["contender"], []).append((row[x], row["ms"]))
        for label, points in series.items():
            axes.plot(*zip(*points, strict=True), marker="o", label=label)
        axes.set(xscale="log", yscale="log", ylabel="ms per step")
    _bound_line(by_size, rows)
    optimizer = next((row["optimizer"] for row in rows if row["kind"] == "sweep_size"), "")
    total = next((row["n_params"] for row in rows if row["kind"] == "sweep_tensors"), 0)
    by_count.set(
        xlabel="number of tensors",
        title=f"{optimizer}: {total / 1e6:.2g}M parameters, split into more tensors",
    )
    by_size.set(xlabel="number of parameters", title=f"{optimizer}: bigger models (100 tensors)")
    by_count.legend(fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _bound_line(axes, rows: list[dict[str, Any]]) -> None:
    """The time an ideal step would take at triad bandwidth, as a dashed line."""
    triad = next((row["gbps"] for row in rows if row["kind"] == "triad"), None)
    points = sorted({row["n_params"] for row in rows if row["kind"] == "sweep_size"})
    optimizer = next((row["optimizer"] for row in rows if row["kind"] == "sweep_size"), None)
    if triad and points and optimizer:
        per_param = BYTES_PER_PARAM[optimizer][0]
        times = [per_param * n / (triad * 1e9) * 1e3 for n in points]
        axes.plot(points, times, "k--", label="bandwidth bound (triad)")
        axes.legend(fontsize="small")


def save(rows: list[dict[str, Any]], out: str | Path, *, meta: dict, with_plot: bool = True):
    """Write ``results.json``, ``results.csv`` and (with_plot) ``sweeps.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.json", "w") as f:
        json.dump(dict(meta=meta, rows=[_json_row(row) for row in rows]), f, indent=1)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    written = [out / "results.json", out / "results.csv"]
    if with_plot:
        plot(rows, out / "sweeps.png")
        written.append(out / "sweeps.png")
    return written


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row with NaN written as null (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m minioptim.bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m minioptim.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: %(default)s")
    parser.add_argument(
        "--optimizers", default=",".join(OPTIMIZERS), help="comma-separated: %(default)s"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first two")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    parser.add_argument("--no-plot", action="store_true", help="skip the sweeps and their plot")
    parser.add_argument("--out", default="bench-results", help="output directory")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=default_device())
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark from the command line, print the tables and save the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = dict(vars(args), **environment(args.device))
    print(
        f"torch {meta['torch']}, device {meta['device']} ({meta['device_name']}), "
        f"{meta['threads']} threads"
    )
    rows = run(
        args.sets.split(","),
        args.optimizers.split(","),
        repeats=args.repeats,
        warmup=args.warmup,
        scale=args.scale,
        device=args.device,
        sweeps=not args.no_plot,
    )
    print(format_table(rows))
    for path in save(rows, args.out, meta=meta, with_plot=not args.no_plot):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
