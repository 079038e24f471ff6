"""minioptim.Muon under FSDP2 (``fully_shard``), on 2 and 4 CPU processes (gloo).

Each matrix is gathered to one owner process, orthogonalized there and scattered back
(minioptim/sharded_muon.py). Every rank trains the sharded model and, in the same
process, the unsharded references on the same batches: minioptim.Muon in one process and
torch.optim.Muon. The tests compare the full parameters after every step, count the
Newton–Schulz calls (each matrix exactly once per step, over all ranks) and the bytes the
all-to-alls send, and take checkpoints through torch.distributed.checkpoint.

Every rank sees the whole batch, so FSDP2's averaged gradient is the single-process one:
the momentum and the bfloat16 matrices that Newton–Schulz sees are the same, and the
sharded run is bit-identical to its single-process reference (measured: every comparison
here, both paths, 2 and 4 processes) and to torch.optim.Muon (the fast path's batched
Newton–Schulz measured bit-identical too, and held to the fast path's bound).
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from conftest import TOLERANCES
from spawned import results_of, spawn_cases
from test_fsdp import assert_trajectories_equal, full, shard
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    get_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

import minioptim
from minioptim import functional, sharded_muon

STEPS = 4  # per run; checkpointed runs take STEPS more after the checkpoint
WORLD_SIZES = [2, 4]
MUON = dict(lr=0.02, weight_decay=0.1)
ADAMW = dict(lr=0.01, weight_decay=0.01)
FULL = StateDictOptions(full_state_dict=True)
EXACT = dict(rtol=0, atol=0)
# The fast path batches Newton-Schulz (baddbmm) where torch.optim.Muon runs one addmm
# chain per matrix: measured bit-identical on the CPU, as in cases.py, which gives it the
# fast path's tolerance all the same (batched matmuls may round differently elsewhere).
BATCHED = TOLERANCES["fast", torch.float64]
# (rows, columns): rows 7, 6, 3 split unevenly over 4 processes (2/2/2/1, 2/2/2/0,
# 1/1/1/0), 6 and 3 over 2 (3/3, 2/1); three matrices share the shape (6, 6), and
# on 4 processes the (6, 6) and (7, 6) shards are both (2, 6) on ranks 0-2.
LAYERS = [(6, 5), (6, 6), (6, 6), (7, 6), (6, 7), (3, 6)]


def make_model(bias: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = []
    for rows, columns in LAYERS:
        layers += [nn.Linear(columns, rows, bias=bias), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def batch(step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    return torch.randn(16, LAYERS[0][1], generator=gen, dtype=torch.float64)


def train(model, optimizers, start: int = 0) -> list[list[torch.Tensor]]:
    """STEPS steps from step ``start``; the full parameters after each."""
    trajectory = []
    for step in range(start, start + STEPS):
        for optimizer in optimizers:
            optimizer.zero_grad()
        model(batch(step)).square().mean().backward()
        for optimizer in optimizers:
            optimizer.step()
        trajectory.append(full(model))
    return trajectory


def recipe(model, library, impl="reference"):
    """Muon for the hidden matrices (all but the last), AdamW for biases and the head."""
    hidden = [layer.weight for layer in list(model)[:-1] if isinstance(layer, nn.Linear)]
    ids = {id(p) for p in hidden}
    others = [p for p in model.parameters() if id(p) not in ids]
    if library is torch.optim:
        return [torch.optim.Muon(hidden, **MUON), torch.optim.AdamW(others, foreach=False, **ADAMW)]
    return [minioptim.Muon(hidden, impl=impl, **MUON), minioptim.AdamW(others, impl=impl, **ADAMW)]


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Full weights into a model, into each rank's shards if it is sharded."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = weights[name]
            if isinstance(p, DTensor):
                value = distribute_tensor(value, p.device_mesh, p.placements)
            p.copy_(value)


class Counter:
    """Counts, on this rank, the matrices handed to Newton-Schulz (with their shapes) and
    the elements and bytes that all_to_all_single sends to other ranks."""

    def __init__(self):
        self.shapes, self.elements, self.bytes = [], 0, 0
        self.newton_schulz, self.all_to_all = functional.newton_schulz, dist.all_to_all_single
        functional.newton_schulz, dist.all_to_all_single = self._newton_schulz, self._all_to_all

    def _newton_schulz(self, matrices, *args, **kwargs):
        batch = matrices.shape[:-2].numel()
        self.shapes += [tuple(matrices.shape[-2:])] * batch
        return self.newton_schulz(matrices, *args, **kwargs)

    def _all_to_all(self, output, input, output_split_sizes, input_split_sizes, group=None):
        rank = dist.get_rank(group)
        sent = sum(n for dest, n in enumerate(input_split_sizes) if dest != rank)
        self.elements += sent
        self.bytes += sent * input.element_size()
        return self.all_to_all(output, input, output_split_sizes, input_split_sizes, group=group)

    def restore(self):
        functional.newton_schulz, dist.all_to_all_single = self.newton_schulz, self.all_to_all


# -- the cases: each runs on every rank and returns what the tests compare --------------


def training(rank: int, out_dir: Path) -> dict:
    results = {}
    for impl in ("reference", "fast"):
        model = shard(make_model())
        muon = minioptim.Muon(model.parameters(), impl=impl, **MUON)
        counter = Counter()
        try:
            results["sharded", impl] = train(model, [muon])
        finally:
            counter.restore()
        results["counts", impl] = dict(
            shapes=counter.shapes, elements=counter.elements, bytes=counter.bytes
        )
        single = make_model()
        single_muon = minioptim.Muon(single.parameters(), impl=impl, **MUON)
        results["single", impl] = train(single, [single_muon])
    reference = make_model()
    results["torch.optim"] = train(reference, [torch.optim.Muon(reference.parameters(), **MUON)])
    return results


def muon_and_adamw(rank: int, out_dir: Path) -> dict:
    results = {}
    for impl in ("reference", "fast"):
        model = shard(make_model(bias=True))
        results["sharded", impl] = train(model, recipe(model, minioptim, impl))
        single = make_model(bias=True)
        results["single", impl] = train(single, recipe(single, minioptim, impl))
    reference = make_model(bias=True)
    results["torch.optim"] = train(reference, recipe(reference, torch.optim))
    return results


def checkpoints(rank: int, out_dir: Path) -> dict:
    """Sharded DCP, full state dicts, and single-process <-> sharded, each resumed."""
    results = {}
    # sharded: get_state_dict -> dcp.save -> fresh sharded run -> dcp.load -> set_state_dict
    model = shard(make_model())
    muon = minioptim.Muon(model.parameters(), **MUON)
    train(model, [muon])
    model_state, optim_state = get_state_dict(model, muon)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=out_dir / "dcp")
    full_state = get_optimizer_state_dict(model, muon, options=FULL)
    full_weights = {k: v.full_tensor() for k, v in model.state_dict().items()}
    results["full"] = {k: v["momentum_buffer"] for k, v in full_state["state"].items()}
    results["uninterrupted"] = train(model, [muon], STEPS)

    fresh_model = shard(make_model())
    fresh = minioptim.Muon(fresh_model.parameters(), **MUON)
    model_state, optim_state = get_state_dict(fresh_model, fresh)
    loaded = {"model": model_state, "optim": optim_state}
    dcp.load(loaded, checkpoint_id=out_dir / "dcp")
    set_state_dict(
        fresh_model, fresh, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"]
    )
    results["resumed", "dcp"] = train(fresh_model, [fresh], STEPS)

    # full_state_dict=True into a fresh sharded run, and into a single-process Muon
    for target in ("sharded", "single"):
        fresh_model = shard(make_model()) if target == "sharded" else make_model()
        load_weights(fresh_model, full_weights)
        fresh = minioptim.Muon(fresh_model.parameters(), **MUON)
        set_optimizer_state_dict(fresh_model, fresh, full_state, options=FULL)
        results["resumed", f"full -> {target}"] = train(fresh_model, [fresh], STEPS)

    # a single-process Muon's checkpoint into a sharded run
    single = make_model()
    single_muon = minioptim.Muon(single.parameters(), **MUON)
    train(single, [single_muon])
    single_state = get_optimizer_state_dict(single, single_muon, options=FULL)
    results["single full"] = {k: v["momentum_buffer"] for k, v in single_state["state"].items()}
    single_weights = {k: v.clone() for k, v in single.state_dict().items()}
    results["single uninterrupted"] = train(single, [single_muon], STEPS)
    fresh_model = shard(make_model())
    load_weights(fresh_model, single_weights)
    fresh = minioptim.Muon(fresh_model.parameters(), **MUON)
    set_optimizer_state_dict(fresh_model, fresh, single_state, options=FULL)
    results["resumed", "single -> sharded"] = train(fresh_model, [fresh], STEPS)
    return results


def refusals(rank: int, out_dir: Path) -> dict:
    """What refuses shards, with the error it raises (or "no error"): a rule that reads
    whole tensors from its layout and does not handle shards, and Muon on matrices
    that FSDP2 was told to shard by columns."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard

    class PerTensorNormalized(minioptim.FusedOptimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

        def update(self, group, param, grad, state, step, layout):
            norms = layout.expand(layout.norm(grad))  # of a shard, under FSDP2
            param.add_(grad / norms, alpha=-group["lr"])

    # FSDP2 shards columns only evenly: 8 columns over 2 or 4 processes
    by_columns = fully_shard(nn.Linear(8, 4, bias=False), shard_placement_fn=lambda p: Shard(1))
    cases = {
        "layout rule": (PerTensorNormalized, shard(make_model()), batch(0)),
        "Muon by columns": (minioptim.Muon, by_columns, torch.ones(2, 8)),
        "clipping shards": (
            lambda ps: minioptim.AdamW(ps, max_grad_norm=1.0),
            shard(make_model()),
            batch(0),
        ),
    }
    errors = {}
    for name, (make, model, x) in cases.items():
        optimizer = make(model.parameters())
        model(x.to(next(model.parameters()).dtype)).sum().backward()
        try:
            optimizer.step()
            errors[name] = "no error"
        except (RuntimeError, ValueError) as error:
            errors[name] = str(error)
    return errors


CASES = {
    "training": training,
    "muon and adamw": muon_and_adamw,
    "checkpoints": checkpoints,
    "refusals": refusals,
}


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=[f"{n} processes" for n in WORLD_SIZES])
def ranks(request, tmp_path_factory) -> list[dict]:
    world_size = request.param
    out_dir = tmp_path_factory.mktemp(f"fsdp_muon_{world_size}")
    return spawn_cases(CASES, world_size, out_dir, timeout_s=120)


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_sharded_muon_equals_single_process_muon_and_torch(ranks, impl):
    for results in results_of(ranks, "training"):
        ours = results["sharded", impl]
        assert_trajectories_equal(ours, results["single", impl], EXACT)
        tolerance = EXACT if impl == "reference" else BATCHED
        assert_trajectories_equal(ours, results["torch.optim"], tolerance)
        assert not torch.equal(ours[-1][0], make_model()[0].weight)  # it trained


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_each_matrix_is_orthogonalized_once_on_a_balanced_owner(ranks, impl):
    """Over all ranks, Newton-Schulz sees exactly the model's matrices once per step; each
    rank's share of the FLOPs is at most an even share plus the largest matrix's."""
    counts = [results["counts", impl] for results in results_of(ranks, "training")]
    seen = sorted(shape for count in counts for shape in count["shapes"])
    assert seen == sorted(LAYERS * STEPS)
    flops = [sum(map(sharded_muon.newton_schulz_flops, c["shapes"])) for c in counts]
    largest = max(map(sharded_muon.newton_schulz_flops, LAYERS)) * STEPS
    assert max(flops) <= sum(flops) / len(counts) + largest
    assert min(flops) > 0  # every rank works


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_bytes_sent_match_the_model_and_beat_an_all_gather(ranks, impl):
    """The bytes the all-to-alls sent, counted on every rank, are what
    sharded_muon.traffic predicts (in bfloat16), and against an all-gather of every
    matrix to every rank, (W - 1) N elements each, they are 2/W of it, up to uneven rows."""
    world_size = len(ranks)
    counts = [results["counts", impl] for results in results_of(ranks, "training")]
    elements = sum(count["elements"] for count in counts)
    model = sharded_muon.traffic(LAYERS, world_size)
    assert elements == model["gather and scatter"] * STEPS
    assert sum(count["bytes"] for count in counts) == 2 * elements  # bfloat16
    all_gather = (world_size - 1) * sum(rows * columns for rows, columns in LAYERS)
    assert model["all-gather"] == all_gather
    assert elements / STEPS <= 2 / world_size * all_gather * 1.1


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_muon_and_adamw_recipe_under_fsdp2(ranks, impl):
    for results in results_of(ranks, "muon and adamw"):
        assert_trajectories_equal(results["sharded", impl], results["single", impl], EXACT)
        tolerance = EXACT if impl == "reference" else BATCHED
        assert_trajectories_equal(results["sharded", impl], results["torch.optim"], tolerance)


def test_sharded_checkpoints_resume_the_uninterrupted_run(ranks):
    """Sharded DCP save/load, and the full state dict into a fresh sharded run and into a
    single-process Muon: each resumed run equals the uninterrupted one, bit for bit."""
    for results in results_of(ranks, "checkpoints"):
        for how in ("dcp", "full -> sharded", "full -> single"):
            assert_trajectories_equal(results["resumed", how], results["uninterrupted"], EXACT)


def test_a_single_process_checkpoint_resumes_sharded(ranks):
    """The full state dict of a single-process Muon equals the sharded run's (same
    training) and, loaded into a sharded run, continues it exactly."""
    for results in results_of(ranks, "checkpoints"):
        assert results["full"].keys() == results["single full"].keys()
        for key, value in results["single full"].items():
            torch.testing.assert_close(results["full"][key], value, **EXACT)
        resumed = results["resumed", "single -> sharded"]
        assert_trajectories_equal(resumed, results["single uninterrupted"], EXACT)


def test_what_cannot_run_on_shards_is_refused(ranks):
    for results in results_of(ranks, "refusals"):
        assert "needs whole tensors" in results["layout rule"]
        assert "handles shards (Muon)" in results["layout rule"]
        assert "sharded by rows" in results["Muon by columns"]
        assert "Shard(dim=1)" in results["Muon by columns"]
        # a shard's norm is not the model's: clipping inside the optimizer is refused
        assert "clip_grad_norm_(model.parameters()" in results["clipping shards"]


def test_measure_script_runs():
    """scripts/measure_sharded_muon.py (numbers in the README and lecture 8) keeps working."""
    from scripts.measure_sharded_muon import measure

    assert all(measure(world_size, steps=1) > 0 for world_size in (1, 2))
