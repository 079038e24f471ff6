"""minioptim under DistributedDataParallel: two CPU processes (gloo) train like one.

With ``gradient_as_bucket_view=True`` DDP points every ``p.grad`` at its own communication
bucket after each backward, so ``p.grad`` is no longer a view of the optimizer's flat buffer;
``FlatBuffer.check_bindings`` must copy those gradients in before the update. Without that,
each rank would update with what its own backward had accumulated into the flat buffer
before DDP moved ``p.grad``: its local, not all-reduced, gradient. The model still trains,
but the replicas drift apart and no longer match single-process training.
"""

import functools
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from examples import ddp_train

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10
WORLD_SIZE = 2
BUCKET_VIEW = [False, True]  # DDP's gradient_as_bucket_view
# Not bit-exact: one process gets the mean gradient from one matmul over all 512 rows;
# under DDP each rank averages its 256 rows and the all-reduce then averages the two ranks,
# which sums the same terms in a different order. Measured after 10 Adam steps in float64:
# at most 1.2e-16 absolute (1e-12 relative, on entries near zero), well inside these bounds.
TOLERANCE = dict(rtol=1e-10, atol=1e-12)


def _worker(rank: int, init_method: str, out_dir: Path) -> None:
    """One rank: train under DDP with both settings of gradient_as_bucket_view, save params."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        for bucket_view in BUCKET_VIEW:
            params = ddp_train.train(
                rank, WORLD_SIZE, STEPS, gradient_as_bucket_view=bucket_view, dtype=torch.float64
            )
            torch.save(params, out_dir / f"rank{rank}-bucket_view={bucket_view}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_dir(tmp_path_factory) -> Path:
    """Start the two ranks once (process start-up dominates the time); they save results here."""
    out_dir = tmp_path_factory.mktemp("ddp")
    init_method = f"file://{out_dir / 'rendezvous'}"
    mp.spawn(_worker, args=(init_method, out_dir), nprocs=WORLD_SIZE)
    return out_dir


@pytest.fixture(scope="module")
def single_process() -> dict[str, dict[str, torch.Tensor]]:
    """Full-batch training in this process: with minioptim.Adam and with torch.optim.Adam."""
    torch_adam = functools.partial(torch.optim.Adam, foreach=False)
    return {
        "minioptim": ddp_train.train(0, 1, STEPS, dtype=torch.float64),
        "torch.optim": ddp_train.train(
            0, 1, STEPS, dtype=torch.float64, optimizer_class=torch_adam
        ),
    }


@pytest.mark.parametrize("bucket_view", BUCKET_VIEW, ids=["grad-copy", "bucket-view"])
def test_ddp_matches_single_process(ddp_dir, single_process, bucket_view):
    ranks = [
        torch.load(ddp_dir / f"rank{rank}-bucket_view={bucket_view}.pt")
        for rank in range(WORLD_SIZE)
    ]
    initial = dict(ddp_train.make_model(torch.float64).named_parameters())
    for name, p in ranks[0].items():
        assert not torch.allclose(p, initial[name], rtol=1e-3, atol=1e-4), f"{name} did not train"
        # DDP applies the same all-reduced gradient on every rank: identical replicas.
        assert torch.equal(ranks[1][name], p), f"{name} differs between the ranks"
        for reference, params in single_process.items():
            torch.testing.assert_close(p, params[name], **TOLERANCE, msg=f"{name} vs {reference}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_example_runs_under_torchrun():
    # The command from the example's docstring; an explicit free port, so that parallel test
    # runs on one machine do not collide on torchrun's default port 29500.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    command += [f"--master-port={free_port()}", "examples/ddp_train.py", "--steps", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"step +5  loss \d\.\d{4}", lines[-2]), result.stdout
    assert lines[-1] == "done: 5 steps on 2 processes (gloo), replicas identical: True"
