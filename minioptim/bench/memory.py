"""Memory: the optimizer's state, the peak a step allocates, and whether a case fits."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

import minioptim

from .contenders import OPTIMIZERS
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


KINDS = ("parameters", "gradients", "state", "master")


def bytes_by_kind(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes the parameters, their gradients, the optimizer's state and its master copies
    hold, each counted once.

    ``"master"`` is what a precision mode adds (:mod:`minioptim.precision`): float32 master
    weights, or a Kahan compensation. ``"state"`` is the rule's state (moments, momentum)
    and the step counters. For a minioptim optimizer the flat buffers of its buckets are
    counted; for another optimizer the parameters, their gradients and every tensor in
    ``optimizer.state`` (by storage, so views are counted once).
    """
    from ..precision import NAMES  # the precision modes' state names

    kinds = dict.fromkeys(KINDS, 0)
    buckets = getattr(optimizer, "buckets", None)
    if buckets is not None:
        for bucket in (b for group in buckets for b in group):
            kinds["parameters"] += bucket.param.nbytes
            kinds["gradients"] += bucket.grad.nbytes
            kinds["state"] += bucket.steps.nbytes
            for name, flat in bucket.state.items():
                kinds["master" if name in NAMES else "state"] += flat.nbytes
        return kinds
    storages: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}
    for group in optimizer.param_groups:
        for p in group["params"]:
            storages["parameters"][p.untyped_storage().data_ptr()] = p.untyped_storage().nbytes()
            if p.grad is not None:
                grad = p.grad.untyped_storage()
                storages["gradients"][grad.data_ptr()] = grad.nbytes()
    for entry in optimizer.state.values():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                kind = "master" if name in NAMES else "state"
                storages[kind][storage.data_ptr()] = storage.nbytes()
    return {kind: sum(found.values()) for kind, found in storages.items()}


def available_bytes(device: str) -> int | None:
    """Free memory on the device (CUDA), or the memory the system can still give (Linux)."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# -- bytes per parameter, by precision mode ------------------------------------------------------

#: The rows of the table: (parameter dtype, precision mode).
PRECISIONS = (
    ("float32", "plain"),
    ("bfloat16", "plain"),
    ("bfloat16", "master"),
    ("bfloat16", "stochastic"),
    ("bfloat16", "kahan"),
)
#: The optimizers of the table, by the bench's names (Adafactor is not a step contender).
TABLE_OPTIMIZERS = ("sgd", "adam", "lion", "muon", "adafactor")


def precision_records(
    shapes: list[tuple[int, ...]],
    optimizers: tuple[str, ...] = TABLE_OPTIMIZERS,
    precisions: tuple[tuple[str, str], ...] = PRECISIONS,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Bytes per parameter of each optimizer in each precision mode: one record each.

    Each optimizer (minioptim's, ``minioptim.Adafactor`` included) is built on fresh
    parameters of ``shapes`` (Muon on the 2-d ones only) with gradients, and takes one
    step, which creates its state. The record splits its bytes by :func:`bytes_by_kind`
    (``parameters``, ``gradients``, ``state``, ``master``; per parameter), and checks the
    total against an independent measurement (``measured``): on CUDA the growth of
    ``torch.cuda.memory_allocated`` from before the parameters were made (plus the step
    counters, which live on the host), elsewhere the sum of ``tensor.nbytes`` over the
    parameters, their gradients and ``optimizer.state``. On CUDA ``peak_bpp`` is
    ``torch.cuda.max_memory_allocated``'s growth over the same span: the bytes above
    include the step's temporaries (float32 working copies, a fused kernel's buffers) at
    their peak.
    """
    records = []
    for name in optimizers:
        for dtype_name, mode in precisions:
            dtype = getattr(torch, dtype_name)
            chosen = [s for s in shapes if len(s) == 2] if name == "muon" else list(shapes)
            if device.startswith("cuda"):
                gc.collect()  # the previous optimizer (reference cycles) leaves the device
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            params = _fresh_params(chosen, dtype, device)
            optimizer = _table_optimizer(name, params, mode)
            optimizer.step()
            kinds = bytes_by_kind(optimizer)
            n = sum(p.numel() for p in params)
            on_host, peak = 0, None
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
                measured = torch.cuda.memory_allocated(device) - before
                peak = torch.cuda.max_memory_allocated(device) - before
                on_host = _host_step_bytes(optimizer)
                how = "torch.cuda.memory_allocated"
            else:
                measured = _tensor_bytes(optimizer)
                how = "tensor.nbytes"
            records.append(
                dict(
                    kind="memory",
                    optimizer=name,
                    dtype=dtype_name,
                    precision=mode,
                    n_tensors=len(chosen),
                    n_params=n,
                    **{f"{kind}_bpp": value / n for kind, value in kinds.items()},
                    total_bpp=sum(kinds.values()) / n,
                    measured_bpp=(measured + on_host) / n,
                    measured_how=how,
                    peak_bpp=None if peak is None else (peak + on_host) / n,
                )
            )
            del optimizer, params
    return records


def _table_optimizer(name: str, params: list[torch.Tensor], mode: str) -> torch.optim.Optimizer:
    """The table's optimizer ``name`` on ``params`` in precision mode ``mode``: the bench's
    record of it, or ``minioptim.Adafactor`` with torch.optim.Adafactor's default lr."""
    if name == "adafactor":
        return minioptim.Adafactor(params, lr=1e-2, precision=mode)
    record = OPTIMIZERS[name]
    return record.minioptim(params, **record.hyper, precision=mode)


def _fresh_params(shapes, dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=generator).to(device, dtype).requires_grad_()
        p.grad = torch.randn(shape, generator=generator).to(device, dtype)
        params.append(p)
    return params


def _tensor_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The sum of ``nbytes`` of every parameter, gradient and state entry: independent of
    how the optimizer stores them (views of one buffer are counted by their own size)."""
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            total += p.nbytes + (p.grad.nbytes if p.grad is not None else 0)
            for value in optimizer.state.get(p, {}).values():
                total += value.nbytes if isinstance(value, torch.Tensor) else 0
    for bucket in (b for group in getattr(optimizer, "buckets", ()) for b in group):
        if not optimizer.step_in_state:  # step counts kept beside the entries (SGD, Lion)
            total += bucket.steps.nbytes
    return total


def _host_step_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the step counters that live on the host (not in a GPU's allocator)."""
    buckets = getattr(optimizer, "buckets", None)
    if buckets is not None:
        return sum(b.steps.nbytes for group in buckets for b in group)
    return sum(
        v.nbytes
        for entry in optimizer.state.values()
        for k, v in entry.items()
        if k == "step" and isinstance(v, torch.Tensor) and v.device.type == "cpu"
    )


def precision_markdown(records: list[dict[str, Any]]) -> str:
    """The memory records as a markdown table: total bytes per parameter (parameters,
    gradients, state and master copies), an optimizer per row, a mode per column."""
    found = [r for r in records if r["kind"] == "memory"]
    columns = list(dict.fromkeys((r["dtype"], r["precision"]) for r in found))
    names = list(dict.fromkeys(r["optimizer"] for r in found))
    by = {(r["optimizer"], r["dtype"], r["precision"]): r for r in found}
    title = {"float32": "float32", "bfloat16": "bf16"}
    header = "| optimizer | " + " | ".join(f"{title[d]} {m}" for d, m in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for name in names:
        cells = []
        for dtype, mode in columns:
            r = by.get((name, dtype, mode))
            cell = "-" if r is None else f"{r['total_bpp']:.1f}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
