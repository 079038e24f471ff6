"""Smoke tests of minioptim.bench, module by module: tiny sizes, one repeat. They check
that every suite runs and writes well-formed records, never speed."""

import json
import math
import os
import runpy
import signal
import sys
import types

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from minioptim import bench
from minioptim.bench import (
    baselines,
    cases,
    cli,
    contenders,
    measure,
    memory,
    report,
    suites,
    training,
)

SCALE = 0.0001
TORCH_LABELS = ("torch for-loop", "torch foreach", "torch fused")
FAST = measure.Timing("cpu", repeats=1, warmup=0, verbose=False)


@pytest.fixture(scope="module")
def records():
    """Every optimizer on two sets (one made of matrices, for Muon), with the sweeps."""
    return bench.run(
        ("mixed", "few-large"),
        suites=("steps", "zero-grad", "sweeps"),
        scale=SCALE,
        repeats=1,
        warmup=0,
        compiled=False,  # compiling every rule takes a minute here: see test_compiled_races
        triad_elements=2**16,
        verbose=False,
    )


def of(records, kind):
    return [r for r in records if r["kind"] == kind]


# -- cases ------------------------------------------------------------------------------------


def test_parameter_sets():
    assert len(cases.convnet_shapes()) == 164
    assert cases.numel(cases.convnet_shapes()) == pytest.approx(14.3e6, rel=0.01)
    llm = cases.llm_shapes()
    assert len(llm) == 292 and cases.numel(llm) == pytest.approx(355e6, rel=0.01)
    assert all(cases.SETS[name].matrices for name in ("many-small", "few-large"))


def test_scaled_keeps_matrices_and_tensor_count():
    shapes = cases.scaled(cases.llm_shapes(), 0.01)
    assert len(shapes) == 292
    assert [len(s) for s in shapes] == [2 if len(s) == 2 else 1 for s in cases.llm_shapes()]
    assert cases.numel(shapes) == pytest.approx(0.01 * 355e6, rel=0.05)
    assert cases.scaled([(3, 3, 3)], 1e-9) == [(1,)]


# -- contenders and baselines -----------------------------------------------------------------


def test_every_optimizer_has_minioptim_and_torch_contenders():
    names = {"sgd", "adam", "adamw", "signsgd", "lion", "rmsprop", "muon"}
    assert set(contenders.OPTIMIZERS) == names
    for optimizer in contenders.OPTIMIZERS.values():
        labels = [c.label for c in optimizer.contenders(compiled=True)]
        assert labels[0] == "minioptim"
        assert ("minioptim reference" in labels) == optimizer.takes_impl
        assert ("minioptim compiled" in labels) == (optimizer.arrays is not None)
        assert any(c.torch for c in optimizer.contenders())
    adam = contenders.OPTIMIZERS["adam"].contenders(reference=False, only=("fused",))
    assert [c.label for c in adam] == ["minioptim", "torch fused"]
    muon = contenders.OPTIMIZERS["muon"].contenders(only=("foreach", "fused"))
    assert [c.label for c in muon if c.torch] == ["torch for-loop"]  # its only one


def test_the_captured_contender_is_cuda_only_and_skipped_elsewhere():
    """``captured=True`` adds a replayed CUDA graph of the default step for the classes
    that take ``capturable=``; on a CPU its build raises, and the benchmark skips it."""
    for optimizer in contenders.OPTIMIZERS.values():
        labels = [c.label for c in optimizer.contenders(captured=True)]
        assert ("minioptim captured" in labels) == optimizer.takes_impl
    adam = contenders.OPTIMIZERS["adam"]
    captured = [c for c in adam.contenders(captured=True) if c.label == "minioptim captured"]
    values = cases.random_tensors([(5, 3)], 0, "cpu", torch.float32)
    grads = cases.random_tensors([(5, 3)], 1, "cpu", torch.float32)
    with pytest.raises(RuntimeError, match="CUDA device"):
        captured[0].build(cases.make_params(values, grads))
    said = []
    timing = types.SimpleNamespace(warmup=1, say=said.append)
    assert suites.build(captured, values, grads, timing) == {}
    assert said == ["  skipping minioptim captured: a captured step needs a CUDA device"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_captured_contender_replays_minioptims_steps_on_cuda():
    adam = contenders.OPTIMIZERS["adam"]
    values = cases.random_tensors([(5, 3), (7,)], 0, "cuda", torch.float32)
    grads = cases.random_tensors([(5, 3), (7,)], 1, "cuda", torch.float32)
    mine, eager = cases.make_params(values, grads), cases.make_params(values, grads)
    captured = contenders.CapturedStep(adam.build(mine, "auto", capturable=True))
    reference = adam.build(eager, "auto", capturable=True)
    for _ in range(3 + 5):  # the warm-up, then the replays (capturing runs no kernel)
        reference.step()
    for _ in range(5):
        captured.step()
    torch.cuda.synchronize()
    for p, q in zip(mine, eager, strict=True):
        assert torch.equal(p, q)


def test_the_students_rmsprop_is_torchs_rule_on_every_path():
    """The bench's student class (no impl= in its __init__) is switched after it is built,
    and computes torch.optim.RMSprop's steps."""
    rmsprop = contenders.OPTIMIZERS["rmsprop"]
    values = cases.random_tensors([(5, 3), (7,)], 0, "cpu", torch.float64)
    grads = cases.random_tensors([(5, 3), (7,)], 1, "cpu", torch.float64)
    for impl in ("auto", "compiled"):
        mine, theirs = cases.make_params(values, grads), cases.make_params(values, grads)
        a = rmsprop.build(mine, impl)
        b = torch.optim.RMSprop(theirs, **rmsprop.hyper, foreach=False)
        assert a.impl == ("reference" if impl == "auto" else impl)
        for _ in range(3):
            a.step()
            b.step()
        for p, q in zip(mine, theirs, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["signsgd", "lion"])
@pytest.mark.parametrize("foreach", [False, True])
def test_baselines_follow_minioptims_rule(name, foreach):
    """The torch-ops baselines compute what minioptim computes (to float rounding)."""
    shapes = [(5, 3), (7,), (1,)]
    values = cases.random_tensors(shapes, 0, "cpu", torch.float64)
    grads = cases.random_tensors(shapes, 1, "cpu", torch.float64)
    record = contenders.OPTIMIZERS[name]
    baseline = {"signsgd": baselines.Signum, "lion": baselines.Lion}[name]
    mine, theirs = cases.make_params(values, grads), cases.make_params(values, grads)
    a = record.minioptim(mine, impl="reference", **record.hyper)
    b = baseline(theirs, **record.hyper, foreach=foreach)
    for _ in range(3):
        a.step()
        b.step()
    for p, q in zip(mine, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


# -- the bytes a step must move ---------------------------------------------------------------


class Reads(TorchDispatchMode):
    """The storages that the aten operations run inside the block read.

    A tensor argument is read unless the operation returns a view of it (``Tensor(a)`` in
    its schema) or is ``copy_``, which overwrites its first argument.
    """

    def __init__(self) -> None:
        super().__init__()
        self.storages: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for i, argument in enumerate(func._schema.arguments):
            value = args[i] if i < len(args) else kwargs.get(argument.name)
            tensors = value if isinstance(value, list | tuple) else [value]
            alias = argument.alias_info
            overwritten = func is torch.ops.aten.copy_.default and i == 0
            if (alias is None or alias.is_write) and not overwritten:
                self.storages |= {t.untyped_storage().data_ptr() for t in tensors
                                  if isinstance(t, torch.Tensor)}  # fmt: skip
        return func(*args, **kwargs)


PRECISION_OPTIMIZERS = [  # those of the precision suite
    name
    for name in contenders.OPTIMIZERS
    if suites.races("precision", cases.SETS["mixed"], "bfloat16", (), name)
]


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize(
    "dtype, mode",
    [("float32", "plain"), ("bfloat16", "plain"), ("bfloat16", "stochastic"),
     ("bfloat16", "kahan"), ("bfloat16", "master")],
)  # fmt: skip
@pytest.mark.parametrize("name", PRECISION_OPTIMIZERS)
def test_step_bytes_are_what_a_step_reads_and_writes(name, dtype, mode, impl):
    """The accounting against a real step: the bytes of each tensor the optimizer holds
    for its parameters (the parameters, gradients and state buffers, each in its dtype),
    counted once if an operation of the step reads it and once if the step changes it."""
    record = contenders.OPTIMIZERS[name]
    shapes = [(5, 3), (7,), (1,)]
    values, grads = (cases.random_tensors(shapes, i, "cpu", getattr(torch, dtype)) for i in (0, 1))
    values = [v * 1e-3 for v in values]  # small weights: no update rounds away (Lion's 1e-4)
    optimizer = record.build(cases.make_params(values, grads), impl, precision=mode)
    optimizer.step()  # creates the state; the first step of SGD differs
    buckets = [b for group in optimizer.buckets for b in group]
    held = [t for b in buckets for t in (b.param, b.grad, *b.state.values())]
    before = [t.clone() for t in held]
    reads = Reads()
    with reads:
        optimizer.step()
    moved = 0
    for tensor, old in zip(held, before, strict=True):
        read = tensor.untyped_storage().data_ptr() in reads.storages
        moved += tensor.nbytes * (read + (not torch.equal(tensor, old)))
    n = sum(b.param.numel() for b in buckets)
    assert record.step_bytes(getattr(torch, dtype), mode) == moved / n


def test_step_bytes_are_unknown_where_the_step_is_not_memory_bound():
    muon = contenders.OPTIMIZERS["muon"]
    assert muon.arrays is None and math.isnan(muon.step_bytes(torch.bfloat16, "kahan"))


# -- measure and memory -----------------------------------------------------------------------


def test_round_robin_and_clocks():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = measure.round_robin(fns, repeats=3, device="cpu")
    assert calls == list("abcbcacab")  # the starting one rotates
    for sample in samples.values():
        assert 0 < sample.host_seconds <= sample.seconds


def test_fit_overhead_recovers_a_line():
    counts = [10, 100, 1000, 10_000]
    fixed, per_tensor = measure.fit_overhead(counts, [120e-6 + 0.3e-6 * n for n in counts])
    assert fixed == pytest.approx(120e-6) and per_tensor == pytest.approx(0.3e-6)


def test_bandwidth_environment_and_memory():
    found = measure.bandwidth("cpu", elements=2**14, repeats=2)
    assert found["copy"] > 0 and found["triad"] > 0
    env = measure.environment("cpu")
    assert env["torch"] == torch.__version__ and env["device_name"] and env["date"]
    params = cases.make_params(*(cases.random_tensors([(10,)], i, "cpu") for i in range(2)))
    optimizer = torch.optim.Adam(params)
    optimizer.step()
    assert memory.state_bytes(optimizer) == 2 * 10 * 4 + 4  # exp_avg, exp_avg_sq; step
    assert memory.peak_of(optimizer.step, "cpu") >= 0
    assert memory.available_bytes("cpu") > 0


# -- suites -----------------------------------------------------------------------------------


def test_steps_cover_every_optimizer_set_and_contender(records):
    found = {(r["set"], r["optimizer"], r["contender"]) for r in of(records, "step")}
    expected = {
        (set_name, name, c.label)
        for set_name in ("mixed", "few-large")
        for name, optimizer in contenders.OPTIMIZERS.items()
        if cases.SETS[set_name].matrices or not optimizer.matrices
        for c in optimizer.contenders()
    }
    assert found == expected
    assert len(of(records, "zero_grad")) == 4 * 2


def test_step_records_are_well_formed(records):
    assert of(records, "environment")[0]["device"] == "cpu"
    assert of(records, "bandwidth")[0]["copy_gbps"] > 0
    for r in of(records, "step"):
        assert math.isfinite(r["ms"]) and r["ms"] > 0 and 0 < r["host_ms"] <= r["ms"], r
        assert r["best_torch"] in {c.label for c in contenders.OPTIMIZERS[r["optimizer"]]
                                   .contenders() if c.torch}  # fmt: skip
        assert r["vs_torch"] > 0
        assert math.isnan(r["gbps"]) == (r["optimizer"] == "muon")


def test_state_is_as_large_as_torchs(records):
    state = {(r["set"], r["optimizer"], r["contender"]): r["state_bytes"] for r in records
             if r["kind"] == "step"}  # fmt: skip
    for set_name in ("mixed", "few-large"):
        for name in ("sgd", "adam", "adamw"):
            mine, theirs = state[set_name, name, "minioptim"], state[set_name, name, "torch fused"]
            assert mine > 0 and mine == pytest.approx(theirs, rel=0.01)


def test_sweeps_cover_both_axes(records):
    assert len({r["n_tensors"] for r in of(records, "sweep_tensors")}) >= 3
    assert len({r["n_params"] for r in of(records, "sweep_size")}) >= 3


def test_the_size_sweep_reaches_the_bandwidth_regime_on_a_gpu_only():
    assert max(n for _, n in suites.size_points(1.0)) == 2**24
    on_gpu = suites.size_points(1.0, suites.SWEEP_LARGEST["cuda"])
    assert max(n for _, n in on_gpu) == 2**28 and all(t <= 100 for t, _ in on_gpu)
    assert suites.size_points(1.0)[0] == on_gpu[0] == (100, 2**16)


def test_compiled_races():
    """minioptim's impl="compiled" is a contender of the element-wise optimizers."""
    found = bench.run(("few-large",), ("adam",), suites=("steps",), scale=SCALE, repeats=1,
                      warmup=0, reference=False, triad_elements=2**16, verbose=False)  # fmt: skip
    steps = {r["contender"]: r for r in of(found, "step")}
    assert set(steps) == {"minioptim", "minioptim compiled", *TORCH_LABELS}
    assert steps["minioptim compiled"]["ms"] > 0
    assert "| compiled |" in report.summary_markdown(found)


def test_the_precision_suite_races_each_mode_on_both_paths(tmp_path, monkeypatch, capsys):
    """bfloat16 steps in each precision mode, on the default and the compiled path, against
    torch's plain ones; each record's GB/s from the bytes its mode must move. Muon (matrix
    products) and the student's RMSprop (no precision=) do not race."""
    monkeypatch.setattr(suites, "bandwidth", lambda device, elements: dict(copy=2e9, triad=2e9))
    options = "--suite precision --sets few-large --optimizers adam,muon,rmsprop --scale 0.0001"
    cli.main([*options.split(), "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)])
    found = report.load(tmp_path / "records.jsonl")
    assert {r["kind"] for r in found} == {"environment", "bandwidth", "precision"}
    adam = contenders.OPTIMIZERS["adam"]
    ours = {f"minioptim {mode}{path}" for mode in suites.PRECISION_MODES
            for path in ("", " compiled")}  # fmt: skip
    assert {r["contender"] for r in found[2:]} == ours | set(TORCH_LABELS)
    for r in found[2:]:
        assert (r["optimizer"], r["dtype"], r["set"]) == ("adam", "bfloat16", "few-large")
        assert r["precision"] == ("plain" if r["torch"] else r["contender"].split()[1])
        assert r["bytes_per_param"] == adam.step_bytes(torch.bfloat16, r["precision"])
        assert r["gbps"] == pytest.approx(r["bytes_per_param"] * r["n_params"] / r["ms"] / 1e6)
        assert r["pct_copy"] == pytest.approx(50 * r["gbps"])  # of 2 GB/s
        assert r["best_torch"] in TORCH_LABELS and r["vs_torch"] > 0
    assert "adam in precision modes" in capsys.readouterr().out
    assert "| minioptim kahan compiled |" in (tmp_path / "summary.md").read_text()


def test_host_overhead_and_its_fit():
    found = suites.host_overhead(contenders.OPTIMIZERS["adam"], FAST, counts=(10, 100), size=8)
    host = of(found, "host")
    assert {r["contender"] for r in host} == {"minioptim", "torch foreach", "torch fused"}
    assert all(r["host_us"] > 0 for r in host) and {r["n_tensors"] for r in host} == {10, 100}
    fits = of(found, "host_fit")
    assert len(fits) == 3 and all(math.isfinite(r["per_tensor_us"]) for r in fits)


def test_training_iterations_agree():
    case = training.TrainingCase(width=16, layers=1, heads=2, vocab=32, context=8, batch=2)
    found = training.suite(case, measure.Timing("cpu", repeats=2, warmup=0, verbose=False))
    assert [r["contender"] for r in found] == ["minioptim", "torch foreach", "torch fused"]
    losses = [r["loss"] for r in found]
    assert all(r["ms"] > 0 and r["n_params"] > 0 for r in found)
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-4)  # the same training, 3 times


def test_run_rejects_unknown_names():
    for keyword in ("sets", "optimizers", "suites"):
        with pytest.raises(ValueError, match="unknown"):
            bench.run(**{keyword: ["tiny"]}, verbose=False)


# -- report and command line ------------------------------------------------------------------


def test_tables_files_and_plot(records, tmp_path):
    more = records + suites.host_overhead(contenders.OPTIMIZERS["sgd"], FAST, counts=(1, 3))
    written = bench.save(more, tmp_path, meta={"scale": SCALE})
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == len(more)
    assert saved["meta"]["torch"] == torch.__version__ and saved["meta"]["date"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "results.csv").exists() and len(written) == 4
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| few-large") == len(contenders.OPTIMIZERS)
    table = report.format_table(more)
    for name in (*contenders.OPTIMIZERS, "zero_grad", "copy", "host time", "us/tensor"):
        assert name in table


def test_command_line(tmp_path, monkeypatch):
    args = cli.parse_args(["--sets", "mixed", "--scale", "0.01", "--no-plot", "--threads", "1"])
    assert (args.sets, args.scale, args.no_plot, args.threads) == ("mixed", 0.01, True, 1)
    assert args.suite.split(",") == list(suites.SUITES)
    monkeypatch.setattr(suites, "bandwidth", lambda device, elements: dict(copy=1e9, triad=1e9))
    options = "--suite steps,sweeps --sets few-large --optimizers sgd --scale 0.001 --repeats 1"
    cli.main([*options.split(), "--warmup", "0", "--no-plot", "--no-compiled", "--out",
              str(tmp_path)])  # fmt: skip
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {r["kind"] for r in saved["records"]} == {"environment", "bandwidth", "step"}


def test_module_runs(monkeypatch, capsys):
    """``python -m minioptim.bench --help``, in this process."""
    monkeypatch.setattr(sys, "argv", ["minioptim.bench", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("minioptim.bench", run_name="__main__")
    help_text = capsys.readouterr().out
    assert exit_.value.code == 0 and "--suite" in help_text and "--device" in help_text


# -- records as they are measured, and the quick preset ---------------------------------------


def test_each_record_is_on_disk_as_soon_as_it_is_written(tmp_path):
    appended = report.RecordFile(tmp_path / "records.jsonl")
    for i in range(3):
        appended.write(dict(kind="step", ms=float(i), gbps=math.nan))
        assert report.load(tmp_path / "records.jsonl")[-1] == dict(kind="step", ms=i, gbps=None)
    appended.close()
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"kind": "step", "ms": 3')  # the process killed in the middle of a line
    assert len(report.load(tmp_path / "records.jsonl")) == 3


def test_a_run_stopped_by_sigterm_keeps_every_record_it_measured(tmp_path, monkeypatch):
    """`timeout` sends SIGTERM after the second comparison: its records are on disk, one
    parsable line each, and the summary is written from them."""
    monkeypatch.setattr(suites, "bandwidth", lambda device, elements: dict(copy=1e9, triad=1e9))
    comparisons = []
    real_steps = suites.steps

    def steps(*args, **kwargs):
        if len(comparisons) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        comparisons.append(args[3].name)
        return real_steps(*args, **kwargs)

    monkeypatch.setattr(suites, "steps", steps)
    options = "--suite steps --sets few-large --optimizers sgd,adam,lion --scale 0.0001"
    with pytest.raises(SystemExit) as exit_:
        cli.main([*options.split(), "--repeats", "1", "--warmup", "0", "--no-compiled",
                  "--out", str(tmp_path)])  # fmt: skip
    assert exit_.value.code == 130
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines]
    assert [r["kind"] for r in found[:2]] == ["environment", "bandwidth"]
    assert {r["optimizer"] for r in of(found, "step")} == {"sgd", "adam"}
    assert len(of(found, "step")) == 2 * (2 + len(TORCH_LABELS))  # minioptim, reference
    assert report.load(tmp_path / "results.json") == found
    assert (tmp_path / "summary.md").read_text().count("| few-large") == 2
    assert signal.getsignal(signal.SIGTERM) is not cli._interrupt  # handler restored


def test_the_quick_preset_covers_every_optimizer_and_both_dtypes(tmp_path, monkeypatch):
    quick = suites.QUICK
    assert set(quick["optimizers"]) == set(contenders.OPTIMIZERS)
    assert {"float32", "bfloat16"} <= set(quick["dtypes"]) and "llm" in quick["sets"]
    assert any(cases.SETS[name].matrices for name in quick["sets"])  # Muon runs on these
    args = cli.parse_args(["--quick", "--repeats", "2"])
    assert args.sets == ",".join(quick["sets"]) and args.repeats == 2  # options override
    monkeypatch.setattr(suites, "bandwidth", lambda device, elements: dict(copy=1e9, triad=1e9))
    monkeypatch.setattr(suites, "HOST_COUNTS", (1, 3))
    cli.main(["--quick", "--scale", "0.00002", "--no-compiled", "--repeats", "1", "--out",
              str(tmp_path)])  # fmt: skip
    found = report.load(tmp_path / "records.jsonl")
    steps = of(found, "step")
    assert {(r["optimizer"], r["dtype"]) for r in steps} == {
        (name, dtype) for name in contenders.OPTIMIZERS for dtype in quick["dtypes"]
    }
    assert {r["contender"] for r in steps} == {
        "minioptim", "torch foreach", "torch fused", "bench foreach", "torch for-loop"
    }  # fmt: skip
    assert all(r["optimizer"] == "muon" for r in steps if r["contender"] == "torch for-loop")
    elementwise = {name for name, o in contenders.OPTIMIZERS.items() if not o.matrices}
    assert {r["optimizer"] for r in of(found, "host")} == elementwise
