"""minioptim under FSDP2 (``fully_shard``): two CPU processes (gloo), sharded parameters.

FSDP2 owns the storage of the parameter shards, so minioptim copies them into its flat
buffer before each update and back after it (minioptim/sharded.py). Each rank trains two
copies of the same sharded model on the same batches, one with minioptim and one with the
reference, and saves the full parameters after every step; the test compares them.

References: torch.optim (``foreach=False``) for SGD, Adam and AdamW; for SignSGD and
Lion, which torch.optim lacks, the same minioptim optimizer on an unsharded copy of the
model in this process (its correctness against per-tensor definitions is tested in
test_registry.py).
"""

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import minioptim

STEPS = 6
WORLD_SIZE = 2
# Sharding changes only who computes which entries, not the arithmetic: the gradients are
# the same sums (each rank has the full batch; FSDP2 averages two equal gradients) and each
# entry's update is element-wise. So the reference path is bit-identical to its reference
# in float64 (measured, all five); the fast path (torch's fused kernels) agrees to rounding
# (measured: 1 ulp, 3.5e-18, on one entry after 5 SGD steps).
TOLERANCES = {"reference": dict(rtol=0, atol=0), "fast": dict(rtol=1e-12, atol=1e-14)}
OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "Adam": dict(lr=0.01, amsgrad=True),
    "AdamW": dict(lr=0.01, weight_decay=0.1),
    "SignSGD": dict(lr=0.01, momentum=0.9, weight_decay=0.1),
    "Lion": dict(lr=0.01, weight_decay=0.1),
}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # 7 and 3 rows do not split evenly over two ranks: uneven and empty-ish shards
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def shard(model: nn.Module) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def batches():
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(16, 5, generator=gen, dtype=torch.float64) for _ in range(STEPS)]


def full(model: nn.Module) -> list[torch.Tensor]:
    return [p.full_tensor().clone() if hasattr(p, "full_tensor") else p.detach().clone()
            for p in model.parameters()]  # fmt: skip


def train(model, optimizer, data, zero_grad_to_none=False):
    trajectory = []
    for x in data:
        optimizer.zero_grad(set_to_none=zero_grad_to_none)
        model(x).square().mean().backward()
        optimizer.step()
        trajectory.append(full(model))
    return trajectory


def train_with_edits(model, optimizer):
    """Two steps; the weights written in place (a user's rescaling, a weight-tying
    refresh); two steps; the first layer frozen; two steps. The bucket must take the
    written values in, and leave the frozen layer alone, as torch.optim does."""
    data = batches()
    trajectory = train(model, optimizer, data[:2], zero_grad_to_none=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    trajectory += train(model, optimizer, data[2:4], zero_grad_to_none=True)
    model[0].requires_grad_(False)
    # each library's own zero_grad: minioptim's zeroes in place but gives frozen
    # parameters None, which torch's default (set_to_none=True) gives every parameter
    ours = isinstance(optimizer, minioptim.FusedOptimizer)
    trajectory += train(model, optimizer, data[4:], zero_grad_to_none=not ours)
    return trajectory


def _worker(rank: int, init_method: str, out_dir: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        results = {}
        for name, options in OPTIMIZERS.items():
            fast_model = shard(make_model())
            fast = getattr(minioptim, name)(fast_model.parameters(), impl="fast", **options)
            results[name, "fast"] = train(fast_model, fast, batches())
            ours_model = shard(make_model())
            ours = getattr(minioptim, name)(ours_model.parameters(), impl="reference", **options)
            assert ours.buckets[0][0].sharded
            results[name, "reference"] = train(ours_model, ours, batches())
            if hasattr(torch.optim, name):
                ref_model = shard(make_model())
                ref = getattr(torch.optim, name)(ref_model.parameters(), foreach=False, **options)
                results[name, "torch.optim"] = train(ref_model, ref, batches(), True)
            # a checkpoint of the sharded optimizer: DTensor state, resumed on fresh shards
            saved = ours.state_dict()
            state = next(iter(saved["state"].values()))
            results[name, "state types"] = sorted({type(v).__name__ for v in state.values()})
            resumed_model = shard(make_model())
            resumed_model.load_state_dict(ours_model.state_dict())
            resumed = getattr(minioptim, name)(
                resumed_model.parameters(), impl="reference", **options
            )
            resumed.load_state_dict(copy.deepcopy(saved))
            results[name, "continued"] = train(ours_model, ours, batches()[:2])
            results[name, "resumed"] = train(resumed_model, resumed, batches()[:2])
        # the model changed between steps: written in place, then a layer frozen
        for library in (minioptim, torch.optim):
            edited_model = shard(make_model())
            extra = dict(impl="reference") if library is minioptim else dict(foreach=False)
            optimizer = library.AdamW(edited_model.parameters(), **OPTIMIZERS["AdamW"], **extra)
            results["edited", library.__name__] = train_with_edits(edited_model, optimizer)
        torch.save(results, out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(f"file://{out_dir / 'rendezvous'}", out_dir), nprocs=WORLD_SIZE)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]


def unsharded(name):
    model = make_model()
    optimizer = getattr(minioptim, name)(model.parameters(), impl="reference", **OPTIMIZERS[name])
    return train(model, optimizer, batches())


def assert_trajectories_equal(ours, reference, tolerance):
    for step, (mine, theirs) in enumerate(zip(ours, reference, strict=True), start=1):
        for p, q in zip(mine, theirs, strict=True):
            torch.testing.assert_close(p, q, **tolerance, msg=lambda m, s=step: f"step {s}: {m}")


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sharded_training_follows_the_reference(ranks, name, impl):
    for results in ranks:
        ours = results[name, impl]
        reference = results.get((name, "torch.optim")) or unsharded(name)
        assert_trajectories_equal(ours, reference, TOLERANCES[impl])
        assert not torch.equal(ours[-1][0], make_model()[0].weight)  # it trained


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sharded_checkpoints_hold_dtensors_and_resume(ranks, name):
    for results in ranks:
        assert "DTensor" in results[name, "state types"]
        exact = TOLERANCES["reference"]
        assert_trajectories_equal(results[name, "resumed"], results[name, "continued"], exact)


def test_sharded_buckets_follow_weights_written_between_steps_and_frozen_layers(ranks):
    """Bit-identical to torch.optim (reference path, float64): the shards are copied in
    before every update, so values written between steps count; a frozen layer gets no
    update (its gradient is None after zero_grad), as in torch.optim."""
    for results in ranks:
        ours, theirs = results["edited", "minioptim"], results["edited", "torch.optim"]
        assert_trajectories_equal(ours, theirs, TOLERANCES["reference"])
        assert torch.equal(ours[-1][0], ours[3][0])  # frozen after step 4: never moved
