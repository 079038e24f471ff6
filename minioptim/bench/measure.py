"""Clocks: the time of one call on the device and on the host, taken in turn, and the
memory bandwidth an element-wise kernel can reach.

On CUDA a call is timed with CUDA events recorded around it (the device's own clock,
after a ``synchronize`` so that nothing else is queued); its **host time** is the CPU's
wall-clock time until the call returns, before the device has finished the work it
queued: the Python and launch overhead that a fast GPU waits for. On a CPU the two are
the same clock: the device *is* the host.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

import minioptim


class Sample(NamedTuple):
    """Seconds of one call: until the device finished it, and until it returned."""

    seconds: float
    host_seconds: float


@dataclass(frozen=True)
class Timing:
    """Where and how long to time: untimed ``warmup`` steps, then ``repeats`` rounds."""

    device: str = "cpu"
    repeats: int = 10
    warmup: int = 2
    seed: int = 0
    verbose: bool = True

    def say(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr, flush=True)

    def round_robin(self, fns: dict[str, Callable[[], Any]]) -> dict[str, Sample]:
        """:func:`~minioptim.bench.measure.round_robin` with these settings."""
        return round_robin(fns, self.repeats, self.device)


def default_device() -> str:
    """``"cuda"`` if a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str) -> None:
    """Wait for the device's queued kernels (GPU work is asynchronous)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device.startswith("mps"):
        torch.mps.synchronize()


def time_call(fn: Callable[[], Any], device: str) -> Sample:
    """Time one call of ``fn``, starting with an idle device."""
    synchronize(device)
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin = time.perf_counter()
        start.record()
        fn()
        host = time.perf_counter() - begin
        end.record()
        end.synchronize()
        return Sample(start.elapsed_time(end) / 1e3, host)
    begin = time.perf_counter()
    fn()
    host = time.perf_counter() - begin
    synchronize(device)
    return Sample(time.perf_counter() - begin, host)


def round_robin(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    device: str,
    summary: Callable[[list[float]], float] = statistics.median,
) -> dict[str, Sample]:
    """Median (or ``summary``) of each function's samples, its calls taken in turn.

    Each function is called ``repeats`` times. The starting one rotates from round to
    round, so none always runs right after the same neighbour (whose traffic may have
    warmed or evicted the caches), and a slow drift of the machine (clock, temperature,
    other processes) touches all of them alike.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in fns}
    for name in rotations(list(fns), repeats):
        samples[name].append(time_call(fns[name], device))
    return {
        name: Sample(*(summary(column) for column in zip(*calls, strict=True)))
        for name, calls in samples.items()
    }


def rotations(names: list[str], rounds: int) -> Iterator[str]:
    """``names`` in turn, ``rounds`` times, starting one further each round: a b c, b c a..."""
    for round_ in range(rounds):
        shift = round_ % len(names)
        yield from names[shift:] + names[:shift]


def bandwidth(device: str, elements: int = 2**26, repeats: int = 20) -> dict[str, float]:
    """Bytes per second of a copy ``b = a`` (8 B per element) and a triad ``a = b + s*c``
    (12 B) on float32 arrays: the best of ``repeats`` runs, STREAM's convention.

    The arrays (256 MiB each by default) are larger than the caches: this is what memory
    delivers to a simple element-wise kernel, the bound for an optimizer step. A step can
    still beat it: a CPU reads an array before writing it (write-allocate), so the copy
    really moves 12 bytes per element and the triad 16, while an in-place update writes
    only what it read; and a small working set may partly stay in a large cache.
    """
    a, b, c = (torch.rand(elements, device=device) for _ in range(3))
    kernels = {"copy": lambda: b.copy_(a), "triad": lambda: torch.add(b, c, alpha=0.5, out=a)}
    best = round_robin(kernels, repeats, device, summary=min)
    return {
        "copy": 8 * elements / best["copy"].seconds,
        "triad": 12 * elements / best["triad"].seconds,
    }


def fit_overhead(counts: list[int], seconds: list[float]) -> tuple[float, float]:
    """``(fixed, per_tensor)`` seconds of the line ``t = fixed + per_tensor * n``.

    Least squares on *relative* errors (each point weighted by ``1 / t**2``): the times
    span three decades, and plain least squares would let the largest point decide the
    intercept alone.
    """
    weights = [1 / t**2 for t in seconds]
    s0 = sum(weights)
    s1 = sum(w * n for w, n in zip(weights, counts, strict=True))
    s2 = sum(w * n * n for w, n in zip(weights, counts, strict=True))
    t0 = sum(w * t for w, t in zip(weights, seconds, strict=True))
    t1 = sum(w * n * t for w, n, t in zip(weights, counts, seconds, strict=True))
    per_tensor = (s0 * t1 - s1 * t0) / (s0 * s2 - s1 * s1)
    return (t0 - per_tensor * s1) / s0, per_tensor


def environment(device: str) -> dict[str, Any]:
    """What the numbers depend on: versions, device, threads, and when."""
    return dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        torch=torch.__version__,
        minioptim=minioptim.__version__,
        python=platform.python_version(),
        device=device,
        device_name=device_name(device),
        threads=torch.get_num_threads(),
    )


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name where the system says it."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
