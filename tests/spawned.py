"""Run a test module's distributed cases in gloo CPU processes and collect each rank's results.

A module declares its cases, ``{name: case(rank, out_dir) -> results}``, in order, and
its ``ranks`` fixture calls :func:`spawn_cases`. Each process runs every case, saving its
results after each one (written whole, then renamed), so a case that aborts the process
(gloo raises SIGABRT on a mismatched collective) still leaves the earlier cases' results;
a case that raises is recorded as its traceback and the others still run.
:func:`results_of` turns either into a test failure that says which rank and why.
"""

from __future__ import annotations

import datetime
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

Cases = dict[str, Callable[[int, Path], dict]]


def _worker(
    rank: int, cases: Cases, world_size: int, out_dir: Path, timeout_s: int, last_barrier: bool
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{out_dir / 'rendezvous'}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),  # a case that hangs fails, not the suite
    )
    results = {}
    try:
        for index, (name, case) in enumerate(cases.items()):
            try:
                results[name] = case(rank, out_dir)
            except Exception:  # reported by the case's test; the other cases still run
                results[name] = traceback.format_exc()
            torch.save(results, out_dir / f"rank{rank}.partial")
            (out_dir / f"rank{rank}.partial").replace(out_dir / f"rank{rank}.pt")
            if last_barrier or index < len(cases) - 1:
                dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn_cases(
    cases: Cases, world_size: int, out_dir: Path, timeout_s: int, last_barrier: bool = True
) -> list[dict]:
    """Each rank's results: ``{case: what it returned, or the traceback it raised}``; a
    case that never finished (its process died) holds why under ``"died"``.
    ``last_barrier=False``: no barrier after the last case (one that may leave the
    process group unusable)."""
    died = None
    try:
        args = (cases, world_size, out_dir, timeout_s, last_barrier)
        mp.spawn(_worker, args=args, nprocs=world_size)
    except Exception as error:  # ProcessException, or EOFError if an error file is cut short
        died = f"{type(error).__name__}: {error}"
    ranks = []
    for rank in range(world_size):
        path = out_dir / f"rank{rank}.pt"
        ranks.append(torch.load(path, weights_only=False) if path.exists() else {})
        ranks[-1]["died"] = died
    return ranks


def results_of(ranks: list[dict], case: str) -> list[dict]:
    """Every rank's results of ``case``, or a test failure naming the rank and why."""
    for rank, results in enumerate(ranks):
        if case not in results:
            pytest.fail(f"rank {rank} died before case {case!r} finished: {results['died']}")
        if isinstance(results[case], str):
            pytest.fail(f"rank {rank} raised in case {case!r}:\n{results[case]}")
    return [results[case] for results in ranks]
