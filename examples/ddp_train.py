"""Data-parallel training with minioptim.Adam under DistributedDataParallel (DDP).

Run it with two processes on the CPU (gloo backend)::

    torchrun --nproc_per_node=2 examples/ddp_train.py
    torchrun --nproc_per_node=2 examples/ddp_train.py --steps 100 --gradient-as-bucket-view

or one process per GPU with NCCL: ``--backend nccl``. ``torchrun`` starts the processes
and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``,
which ``init_process_group`` reads.

Every rank generates the same data from a fixed seed and trains on its own slice of it.
DDP averages the gradients over the ranks during ``backward``, so every rank applies the
same update, the replicas stay identical, and the result is that of one process training
on all the data.

With ``--gradient-as-bucket-view`` DDP points each ``p.grad`` at a slice of its own
communication buffer. minioptim's optimizers keep ``p.grad`` a view of *their* flat
buffer, so before each update ``step()`` copies such foreign gradients into its buffer and
points ``p.grad`` back at it (``FlatBuffer.check_bindings``). The results are the same;
with minioptim the flag saves neither memory nor copies, the two buffers exist either way.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.datasets import make_classification
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import minioptim

LR = 0.01


def make_data(n: int = 512, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """A fixed classification data set (20 features, 3 classes): the same on every rank."""
    x, y = make_classification(
        n_samples=n, n_features=20, n_informative=10, n_classes=3, random_state=0
    )
    return torch.tensor(x, dtype=dtype), torch.tensor(y)


def make_model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)  # DDP would broadcast rank 0's weights anyway
    return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 3)).to(dtype)


def train(
    rank: int,
    world_size: int,
    steps: int,
    *,
    gradient_as_bucket_view: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    optimizer_class: Callable[..., torch.optim.Optimizer] = minioptim.Adam,
    log_every: int = 0,
) -> dict[str, torch.Tensor]:
    """Train for ``steps`` full-batch steps on this rank's 1/world_size of the data.

    With ``world_size > 1`` call it after ``dist.init_process_group``; with ``world_size == 1``
    it trains one plain model on the whole batch (the reference DDP must reproduce).
    Returns the final parameters, on the CPU.
    """
    x, y = make_data(dtype=dtype)
    shard = len(x) // world_size  # rank r takes rows [r * shard, (r + 1) * shard)
    x = x[rank * shard : (rank + 1) * shard].to(device)
    y = y[rank * shard : (rank + 1) * shard].to(device)
    model = make_model(dtype).to(device)
    if world_size > 1:
        model = DDP(model, gradient_as_bucket_view=gradient_as_bucket_view)
    optimizer = optimizer_class(model.parameters(), lr=LR)  # after wrapping, as usual
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()  # DDP all-reduces (averages) the gradients here
        optimizer.step()  # first copies gradients that DDP moved to its buckets, if any
        if log_every and (step % log_every == 0 or step == steps):
            loss = loss.detach()
            if world_size > 1:  # the loss of the whole batch: average the ranks' losses
                dist.all_reduce(loss)
                loss /= world_size
            if rank == 0:
                print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    module = model.module if world_size > 1 else model
    return {name: p.detach().cpu().clone() for name, p in module.named_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (one GPU a rank)")
    parser.add_argument("--gradient-as-bucket-view", action="store_true")
    args = parser.parse_args()

    dist.init_process_group(args.backend)  # rank and world size from torchrun's env vars
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = "cpu"
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    params = train(
        rank,
        world_size,
        args.steps,
        gradient_as_bucket_view=args.gradient_as_bucket_view,
        device=device,
        log_every=max(1, args.steps // 10),
    )
    # DDP's promise: every rank holds the same model. Compare each rank with rank 0's copy.
    flat = torch.cat([p.flatten() for p in params.values()]).to(device)
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([float(torch.equal(flat, reference))], device=device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    if rank == 0:
        print(
            f"done: {args.steps} steps on {world_size} processes ({args.backend}), "
            f"replicas identical: {bool(same.item())}"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
