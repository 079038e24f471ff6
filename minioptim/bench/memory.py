"""Memory: the optimizer's state, the peak a step allocates, and whether a case fits."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from .measure import synchronize


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


def peak_of(fn: Callable[[], Any], device: str) -> int | None:
    """Bytes that one call of ``fn`` allocates at its peak (see :class:`PeakMemory`)."""
    with PeakMemory(device) as peak:
        fn()
    return peak.bytes


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


def available_bytes(device: str) -> int | None:
    """Free memory on the device (CUDA), or the memory the system can still give (Linux)."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
