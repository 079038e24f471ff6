"""The command line: ``python -m minioptim.bench --help``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import torch

from . import cases, report
from .contenders import OPTIMIZERS
from .measure import default_device
from .suites import QUICK, SUITES, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of ``python -m minioptim.bench``; ``--quick`` changes the defaults
    to :data:`~minioptim.bench.suites.QUICK`'s, and options given with it override them."""
    parser = argparse.ArgumentParser(
        prog="python -m minioptim.bench",
        description="Time minioptim's optimizers against torch.optim's.",
        allow_abbrev=False,  # --quick is looked for by its full name
    )
    comma = "comma-separated, default: %(default)s"
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every optimizer in float32 and bfloat16 on the many-small and llm sets, "
        "and the host overhead, against torch's foreach and fused versions (under 90 s on "
        "an H100-class GPU, estimated; use --scale on a CPU)",
    )
    parser.add_argument("--suite", default=",".join(SUITES), help=comma)
    parser.add_argument("--sets", default=",".join(cases.SETS), help=comma)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help=comma)
    parser.add_argument("--dtypes", default="float32", help=comma + " (e.g. bfloat16)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size by this (0.1 on a CPU)"
    )
    parser.add_argument(
        "--no-compiled", action="store_true", help="leave out minioptim's impl='compiled'"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the sweeps and the plot")
    parser.add_argument("--out", default="bench-results", help="output directory")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=default_device())
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(
            suite=",".join(QUICK["suites"]),
            sets=",".join(QUICK["sets"]),
            optimizers=",".join(QUICK["optimizers"]),
            dtypes=",".join(QUICK["dtypes"]),
            repeats=QUICK["repeats"],
            warmup=QUICK["warmup"],
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print its tables and save the results.

    Each record is appended to ``OUT/records.jsonl`` as soon as it is measured. A run
    stopped by Ctrl-C or a ``SIGTERM`` (``timeout``) still writes its tables and files,
    from what it measured, and exits with status 130.
    """
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    suites = [s for s in args.suite.split(",") if not (args.no_plot and s == "sweeps")]
    records: list[report.Record] = []
    appended = report.RecordFile(Path(args.out) / "records.jsonl")

    def keep(record: report.Record) -> None:
        records.append(record)
        appended.write(record)

    preset = QUICK if args.quick else {}
    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        run(
            args.sets.split(","),
            args.optimizers.split(","),
            suites=suites,
            repeats=args.repeats,
            warmup=args.warmup,
            scale=args.scale,
            device=args.device,
            dtypes=args.dtypes.split(","),
            reference=preset.get("reference", True),
            compiled=not args.no_compiled,
            torch_variants=preset.get("torch_variants", ()),
            keep=keep,
        )
    except KeyboardInterrupt:
        interrupted = True
        print(f"interrupted: saving the {len(records)} records measured", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        appended.close()
    print(report.format_table(records))
    for path in report.save(records, args.out, meta=vars(args), with_plot=not args.no_plot):
        print(f"wrote {path}")
    print(f"wrote {appended.path}")
    if interrupted:
        raise SystemExit(130)


def _interrupt(signum: int, frame: object) -> None:
    """``SIGTERM`` as Ctrl-C: the run stops where it is and saves what it has."""
    raise KeyboardInterrupt
