"""The records, as text tables, a markdown summary, a plot and files.

The command line appends each record to ``records.jsonl`` as soon as it is measured
(:class:`RecordFile`), and writes the other files at the end; :func:`load` reads the
records back, those of an interrupted run too.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

Record = dict[str, Any]
MiB = 2**20


def _of(records: list[Record], kind: str) -> list[Record]:
    return [r for r in records if r["kind"] == kind]


def _first(records: list[Record], kind: str) -> Record:
    return next(iter(_of(records, kind)), {})


def _groups(records: list[Record], kind: str, *keys: str) -> dict[tuple, list[Record]]:
    groups: dict[tuple, list[Record]] = {}
    for r in _of(records, kind):
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return groups


def _step_groups(records: list[Record]) -> dict[tuple, list[Record]]:
    return _groups(records, "step", "set", "dtype", "optimizer")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _ms(value: float) -> str:
    """Three significant digits, without exponents."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _count(n: int) -> str:
    """8000 -> 8.0K, 354_635_776 -> 355M."""
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MiB:.1f}"


def describe(records: list[Record]) -> str:
    """One line: the device, torch and the date of the run; the bandwidths found."""
    env, bw = _first(records, "environment"), _first(records, "bandwidth")
    line = (
        f"{env.get('device_name', '?')} ({env.get('device', '?')}, threads={env.get('threads')}),"
        f" torch {env.get('torch', '?')}, {env.get('date', '?')}"
    )
    if bw:
        line += f"; copy {bw['copy_gbps']:.1f} GB/s, triad {bw['triad_gbps']:.1f} GB/s"
    return line


def format_table(records: list[Record]) -> str:
    """Every suite's records as text tables."""
    from .contenders import OPTIMIZERS

    lines = [describe(records)]
    for (set_name, dtype, name), group in _step_groups(records).items():
        first, optimizer = group[0], OPTIMIZERS[name]
        lines += ["", f"{set_name} ({first['n_tensors']} tensors, {first['n_params'] / 1e6:.2f}M"]
        lines[-1] += f" {dtype}) - {name}: {optimizer.traffic}"
        lines.append(
            f"  {'contender':<22}{'ms/step':>10}{'host ms':>9}{'/best torch':>12}{'GB/s':>8}"
            f"{'% copy':>8}{'state MiB':>11}{'peak MiB':>10}"
        )
        for r in group:
            lines.append(
                f"  {r['contender']:<22}{r['ms']:>10.3f}{r['host_ms']:>9.3f}"
                f"{_num(r['vs_torch'], 2):>11}x{_num(r['gbps']):>8}{_num(r['pct_copy'], 0):>7}%"
                f"{r['state_bytes'] / MiB:>11.1f}{_mib(r['step_peak_bytes']):>10}"
            )
    for (set_name,), group in _groups(records, "zero_grad", "set").items():
        lines += ["", f"{set_name} ({group[0]['n_tensors']} tensors) - zero_grad, then backward"]
        lines.append(f"  {'contender':<33}{'zero_grad ms':>13}{'GB/s':>7}{'backward ms':>13}")
        for r in group:
            lines.append(
                f"  {r['contender']:<33}{r['ms']:>13.3f}{_num(r['gbps']):>7}"
                f"{r['backward_ms']:>13.3f}"
            )
    training = _of(records, "training")
    if training:
        t = training[0]
        lines += ["", f"training: {t['layers']} layers of width {t['width']}, "]
        lines[-1] += f"{t['n_params'] / 1e6:.1f}M params, batch {t['batch']}x{t['context']}"
        lines.append(f"  {'AdamW':<22}{'ms/iter':>10}{'host ms':>9}{'/best torch':>12}{'loss':>9}")
        for r in training:
            lines.append(
                f"  {r['contender']:<22}{r['ms']:>10.2f}{r['host_ms']:>9.2f}"
                f"{r['vs_torch']:>11.2f}x{r['loss']:>9.4f}"
            )
    lines += _host_lines(records)
    lines += _precision_lines(records)
    lines += _memory_lines(records)
    lines += [
        "",
        "/best torch: time over the fastest torch contender's (bench: written with torch ops).",
        "% copy: achieved GB/s over the copy's; above 100%: see measure.bandwidth.",
        "host ms: until step() returned on the CPU (on CUDA, before the device finished).",
    ]
    return "\n".join(lines)


def _host_lines(records: list[Record]) -> list[str]:
    lines = []
    fits = {(r["optimizer"], r["contender"]): r for r in _of(records, "host_fit")}
    for (name,), group in _groups(records, "host", "optimizer").items():
        counts = sorted({r["n_tensors"] for r in group})
        labels = list(dict.fromkeys(r["contender"] for r in group))
        times = {(r["contender"], r["n_tensors"]): r["host_us"] for r in group}
        lines += ["", f"host time of one {name} step, us, on n tensors of {group[0]['size']}"]
        lines.append(f"  {'contender':<18}" + "".join(f"{n:>10}" for n in counts) + "   fit")
        for label in labels:
            cells = "".join(f"{_num(times.get((label, n))):>10}" for n in counts)
            fit = fits.get((name, label))
            if fit:
                cells += f"   {fit['fixed_us']:.1f} us + {fit['per_tensor_us']:.3f} us/tensor"
            lines.append(f"  {label:<18}{cells}")
    return lines


def _precision_lines(records: list[Record]) -> list[str]:
    lines = []
    for (set_name, name), group in _groups(records, "precision", "set", "optimizer").items():
        first = group[0]
        lines += ["", f"{set_name} ({first['n_tensors']} tensors, {first['n_params'] / 1e6:.2f}M"]
        lines[-1] += f" {first['dtype']}) - {name} in precision modes (torch's: plain)"
        lines.append(
            f"  {'contender':<29}{'ms/step':>10}{'/best torch':>12}{'B/param':>9}{'GB/s':>8}"
            f"{'% copy':>8}"
        )
        for r in group:
            lines.append(
                f"  {r['contender']:<29}{r['ms']:>10.3f}{_num(r['vs_torch'], 2):>11}x"
                f"{r['bytes_per_param']:>9.0f}{_num(r['gbps']):>8}{_num(r['pct_copy'], 0):>7}%"
            )
    return lines


def _memory_lines(records: list[Record]) -> list[str]:
    lines = []
    for (set_name,), group in _groups(records, "memory", "set").items():
        lines += ["", f"{set_name} - bytes per parameter by precision mode"]
        lines.append(
            f"  {'optimizer':<11}{'dtype':<10}{'mode':<12}{'params':>7}{'grads':>7}"
            f"{'state':>7}{'master':>7}{'total':>7}{'measured':>10}"
        )
        for r in group:
            lines.append(
                f"  {r['optimizer']:<11}{r['dtype']:<10}{r['precision']:<12}"
                f"{r['parameters_bpp']:>7.2f}{r['gradients_bpp']:>7.2f}{r['state_bpp']:>7.2f}"
                f"{r['master_bpp']:>7.2f}{r['total_bpp']:>7.2f}{r['measured_bpp']:>10.2f}"
            )
    return lines


def summary_markdown(records: list[Record]) -> str:
    """The step records as one markdown table, as the README shows them: ms per step."""
    header = (
        "| set | optimizer | dtype | for-loop | foreach | fused | minioptim | compiled "
        "| minioptim / best torch | compiled / best torch "
        "| GB/s (% of copy): minioptim, compiled |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [f"{describe(records)}\n"] + ([header] if _of(records, "step") else [])
    for (set_name, dtype, name), group in _step_groups(records).items():
        by = {r["contender"]: r for r in group}
        mine, compiled = by.get("minioptim"), by.get("minioptim compiled")
        if not mine:
            continue
        cells = []
        for variant in ("for-loop", "foreach", "fused"):
            r = next((r for r in group if r["torch"] and r["contender"].endswith(variant)), None)
            star = "*" if r and r["contender"].startswith("bench") else ""
            cells.append(f"{_ms(r['ms'])}{star}" if r else "-")
        cells += [_ms(r["ms"]) if r else "-" for r in (mine, compiled)]
        cells += [f"{_num(r['vs_torch'], 2)}x" if r else "-" for r in (mine, compiled)]
        cells.append(", ".join(_bandwidth(r) for r in (mine, compiled) if r))
        shape = f"{set_name} ({mine['n_tensors']} tensors, {_count(mine['n_params'])})"
        lines.append(f"| {shape} | {name} | {dtype} | {' | '.join(cells)} |")
    if any(r["torch"] and r["contender"].startswith("bench") for r in _of(records, "step")):
        lines.append("\n\\* a torch-ops baseline of minioptim.bench.baselines (torch has none).")
    if _of(records, "precision"):
        lines += ["", _precision_markdown(records)]
    if _of(records, "memory"):
        from .memory import precision_markdown

        lines += [
            "\nBytes per parameter (parameters + gradients + state + master copies):\n",
            precision_markdown(records),
        ]
    return "\n".join(lines)


def _precision_markdown(records: list[Record]) -> str:
    """The precision suite's records as a markdown table: each contender's ms per step,
    the bytes its mode must move, and its GB/s (% of copy)."""
    lines = [
        "Precision modes (torch: plain steps, for reference):\n",
        "| set | optimizer | contender | ms | / best torch | bytes/param | GB/s (% of copy) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in _of(records, "precision"):
        shape = f"{r['set']} ({r['n_tensors']} tensors, {_count(r['n_params'])}, {r['dtype']})"
        lines.append(
            f"| {shape} | {r['optimizer']} | {r['contender']} | {_ms(r['ms'])} "
            f"| {_num(r['vs_torch'], 2)}x | {r['bytes_per_param']:.0f} | {_bandwidth(r)} |"
        )
    return "\n".join(lines)


def _bandwidth(record: Record) -> str:
    """``3.03e+03 (74 %)``: achieved GB/s and its share of the copy's, or ``-``."""
    gbps = record["gbps"]
    if gbps is None or math.isnan(gbps):
        return "-"
    return f"{gbps:.3g} ({record['pct_copy']:.0f} %)"


def plot(records: list[Record], path: str | Path | None = None):
    """The sweeps (step time against tensor count, and against size) and, when measured,
    the host overhead; titled with the device, torch version and date.

    Returns the matplotlib ``Figure`` (built without pyplot, so no backend is changed);
    also saved to ``path`` when given.
    """
    from matplotlib.figure import Figure

    panels = [kind for kind in ("sweep_tensors", "sweep_size", "host") if _of(records, kind)]
    fig = Figure(figsize=(5.5 * max(1, len(panels)), 4.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, kind in zip(axes, panels, strict=False):
        {"sweep_tensors": _sweep_tensors, "sweep_size": _sweep_size, "host": _host}[kind](
            ax, records
        )
        ax.legend(fontsize="small")
    fig.suptitle(describe(records), fontsize="medium")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


#: One colour per kind of contender, the same in every panel.
COLORS = {
    "minioptim": "C0",
    "for-loop": "C1",
    "foreach": "C2",
    "fused": "C3",
    "reference": "C4",
    "compiled": "C5",
}


def _color(label: str) -> str:
    return COLORS.get(label.split()[-1], COLORS["minioptim"])


def _lines(ax, records: list[Record], x: str, y: str, scale: float = 1.0) -> None:
    series: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        series.setdefault(r["contender"], []).append((r[x], r[y] * scale))
    for label, points in series.items():
        ax.plot(*zip(*sorted(points), strict=True), marker="o", label=label, color=_color(label))
    ax.set(xscale="log", yscale="log")


def _sweep_tensors(ax, records: list[Record]) -> None:
    sweep = _of(records, "sweep_tensors")
    _lines(ax, sweep, "n_tensors", "ms")
    total = sweep[0]["n_params"] / 1e6
    ax.set(xlabel="number of tensors", ylabel="ms per step")
    ax.set_title(f"{sweep[0]['optimizer']}: {total:.2g}M parameters in more tensors")


def _sweep_size(ax, records: list[Record]) -> None:
    from .contenders import OPTIMIZERS

    sweep = _of(records, "sweep_size")
    _lines(ax, sweep, "n_params", "ms")
    name, copy = sweep[0]["optimizer"], _first(records, "bandwidth").get("copy_gbps")
    arrays = OPTIMIZERS[name].arrays
    if copy and arrays:
        sizes = sorted({r["n_params"] for r in sweep})
        ideal = [4 * arrays * n / (copy * 1e9) * 1e3 for n in sizes]
        ax.plot(sizes, ideal, "k--", label="at copy bandwidth")
    ax.set(xlabel="number of parameters (100 tensors)", ylabel="ms per step")
    ax.set_title(f"{name}: bigger models")


def _host(ax, records: list[Record]) -> None:
    host = _of(records, "host")
    name = "adam" if any(r["optimizer"] == "adam" for r in host) else host[0]["optimizer"]
    _lines(ax, [r for r in host if r["optimizer"] == name], "n_tensors", "host_us", 1e-3)
    counts = sorted({r["n_tensors"] for r in host})
    for fit in _of(records, "host_fit"):
        if fit["optimizer"] == name:
            line = [(fit["fixed_us"] + fit["per_tensor_us"] * n) * 1e-3 for n in counts]
            ax.plot(counts, line, ":", color=_color(fit["contender"]))
    ax.set(xlabel=f"number of tensors of {host[0]['size']}", ylabel="host ms per step")
    ax.set_title(f"{name}: host time of step() (dotted: fixed + per tensor)")


def save(records: list[Record], out: str | Path, *, meta: dict, with_plot: bool = True):
    """Write ``results.json``, ``results.csv``, ``summary.md`` and (with_plot) ``bench.png``
    into ``out``; return their paths. The JSON's ``meta`` is ``meta`` (the command line)
    and the environment: device name, torch version, date."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in ("results.json", "results.csv", "summary.md")]
    meta = {**meta, **_first(records, "environment")}
    meta.pop("kind", None)
    with open(paths[0], "w") as f:
        json.dump(dict(meta=meta, records=[_json(r) for r in records]), f, indent=1)
    with open(paths[1], "w", newline="") as f:
        writer = csv.DictWriter(f, list(dict.fromkeys(key for r in records for key in r)))
        writer.writeheader()
        writer.writerows(records)
    paths[2].write_text(summary_markdown(records) + "\n")
    if with_plot and any(_of(records, kind) for kind in ("sweep_tensors", "sweep_size", "host")):
        paths.append(out / "bench.png")
        plot(records, paths[-1])
    return paths


class RecordFile:
    """Records appended to a JSON-lines file, one line each, flushed as they come.

    A run stopped at any moment (a time limit, Ctrl-C, a lost machine) leaves every
    record written before, each a complete line; :func:`load` reads them back.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")  # noqa: SIM115 (closed by close())

    def write(self, record: Record) -> None:
        self.file.write(json.dumps(_json(record)) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def load(path: str | Path) -> list[Record]:
    """The records of a ``records.jsonl`` or of a ``results.json`` (NaN read as ``None``).

    A last line cut short (the process killed while writing it) is left out.
    """
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())["records"]
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return found


def _json(record: Record) -> Record:
    """The record with NaN written as null (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
