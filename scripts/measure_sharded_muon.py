"""Muon's step under FSDP2 on 1, 2 and 4 CPU processes: time, bytes sent, FLOPs per owner.

    .venv/bin/python -m scripts.measure_sharded_muon [--steps 20] [--world-sizes 1 2 4]

The model is a stack of bias-free linear layers in float32: four 512 x 256, four
256 x 512 and eight 256 x 256 matrices (1.6M parameters). Every process runs one thread
(``torch.set_num_threads(1)``); the time is the median of ``optimizer.step()`` alone
(the gradients of one backward, reused), the slowest rank's. The bytes are those the two
all-to-alls send per step, summed over the processes (``sharded_muon.traffic``, which
tests/test_fsdp_muon.py checks by counting), against an all-gather of every matrix to
every process in the same bfloat16. The FLOPs are Newton-Schulz's on the busiest owner.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

import minioptim
from minioptim import sharded_muon

SHAPES = [(512, 256)] * 4 + [(256, 512)] * 4 + [(256, 256)] * 8


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(columns, rows, bias=False) for rows, columns in SHAPES))


def step_times(model: nn.Module, steps: int) -> list[float]:
    optimizer = minioptim.Muon(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():  # a gradient per matrix, without a forward pass
        grad = torch.randn(p.shape, generator=gen)
        if isinstance(p, DTensor):  # this process's rows
            grad = distribute_tensor(grad, p.device_mesh, p.placements)
        p.grad = grad
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        if dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[2:]


def _worker(rank: int, world_size: int, steps: int, out: Path) -> None:
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}.rdv", rank=rank,
                            world_size=world_size)  # fmt: skip
    try:
        model = make_model()
        for layer in model:
            fully_shard(layer)
        median = statistics.median(step_times(model, steps))
        slowest = [0.0] * world_size
        dist.all_gather_object(slowest, median)
        if rank == 0:
            torch.save(max(slowest), out)
    finally:
        dist.destroy_process_group()


def measure(world_size: int, steps: int) -> float:
    """The median step time in seconds (the slowest rank's)."""
    if world_size == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return statistics.median(step_times(make_model(), steps))
        finally:
            torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "time.pt"
        mp.spawn(_worker, args=(world_size, steps, out), nprocs=world_size)
        return torch.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    shapes = [torch.Size(shape) for shape in SHAPES]
    print(f"{len(SHAPES)} matrices, {sum(s.numel() for s in shapes) / 1e6:.2f}M parameters")
    print("processes  step ms  sent MB/step  all-gather MB  NS GFLOP (busiest owner)")
    for world_size in args.world_sizes:
        seconds = measure(world_size, args.steps)
        traffic = sharded_muon.traffic(shapes, world_size)
        owners = sharded_muon.owners(tuple(shapes), world_size)
        work = [0] * world_size
        for shape, owner in zip(shapes, owners, strict=True):
            work[owner] += sharded_muon.newton_schulz_flops(shape)
        sent, naive = (2 * traffic[k] / 1e6 for k in ("gather and scatter", "all-gather"))
        print(f"{world_size:9d}  {seconds * 1e3:7.1f}  {sent:12.2f}  {naive:13.2f}  "
              f"{max(work) / 1e9:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
