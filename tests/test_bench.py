"""Smoke test of the benchmark: tiny sizes, one repeat; it checks the output, not speed."""

import json
import math

import pytest

from minioptim import bench


@pytest.fixture(scope="module")
def rows():
    return bench.run(scale=0.001, repeats=1, warmup=0, triad_elements=2**20, verbose=False)


def test_every_optimizer_set_and_contender_has_a_row(rows):
    steps = {(r["set"], r["optimizer"], r["contender"]) for r in rows if r["kind"] == "step"}
    expected = {
        (set_name, optimizer, contender)
        for set_name in bench.SETS
        for optimizer in bench.OPTIMIZERS
        for contender in bench.contenders(optimizer)
    }
    assert steps == expected
    zero = [r for r in rows if r["kind"] == "zero_grad"]
    assert len(zero) == 4 * len(bench.SETS)


def test_times_are_finite_and_positive(rows):
    timed = [r for r in rows if r["kind"] != "triad"]
    assert timed
    for row in timed:
        assert math.isfinite(row["ms"]) and row["ms"] > 0, row
    triad = [r for r in rows if r["kind"] == "triad"]
    assert len(triad) == 1 and triad[0]["gbps"] > 0


def test_sweeps_cover_both_axes(rows):
    tensor_counts = {r["n_tensors"] for r in rows if r["kind"] == "sweep_tensors"}
    sizes = {r["n_params"] for r in rows if r["kind"] == "sweep_size"}
    assert len(tensor_counts) >= 3 and len(sizes) >= 3


def test_state_is_as_large_as_torchs(rows):
    state = {
        (r["set"], r["optimizer"], r["contender"]): r["state_bytes"]
        for r in rows
        if r["kind"] == "step"
    }
    for set_name in bench.SETS:
        for optimizer in ("sgd", "adam", "adamw"):
            mine = state[set_name, optimizer, "minioptim fast"]
            theirs = state[set_name, optimizer, "torch fused"]
            assert mine > 0 and mine == pytest.approx(theirs, rel=0.01)


def test_files_and_table(rows, tmp_path):
    written = bench.save(rows, tmp_path, meta=bench.environment("cpu"))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == len(rows)
    assert (tmp_path / "sweeps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "results.csv").exists() and len(written) == 3
    table = bench.format_table(rows)
    for name in (*bench.SETS, *bench.OPTIMIZERS, "zero_grad", "triad"):
        assert name in table


def test_command_line_options():
    args = bench.parse_args(["--sets", "mixed", "--scale", "0.01", "--no-plot", "--threads", "1"])
    assert (args.sets, args.scale, args.no_plot, args.threads) == ("mixed", 0.01, True, 1)
    with pytest.raises(ValueError, match="unknown"):
        bench.run(["tiny"], verbose=False)
