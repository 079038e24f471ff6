"""The command line: ``python -m minioptim.bench --help``."""

from __future__ import annotations

import argparse

import torch

from . import cases, report
from .contenders import OPTIMIZERS
from .measure import default_device
from .suites import SUITES, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of ``python -m minioptim.bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m minioptim.bench",
        description="Time minioptim's optimizers against torch.optim's.",
    )
    comma = "comma-separated, default: %(default)s"
    parser.add_argument("--suite", default=",".join(SUITES), help=comma)
    parser.add_argument("--sets", default=",".join(cases.SETS), help=comma)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help=comma)
    parser.add_argument("--dtypes", default="float32", help=comma + " (e.g. bfloat16)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size by this (0.1 on a CPU)"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the sweeps and the plot")
    parser.add_argument("--out", default="bench-results", help="output directory")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=default_device())
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print its tables and save the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    suites = [s for s in args.suite.split(",") if not (args.no_plot and s == "sweeps")]
    records = run(
        args.sets.split(","),
        args.optimizers.split(","),
        suites=suites,
        repeats=args.repeats,
        warmup=args.warmup,
        scale=args.scale,
        device=args.device,
        dtypes=args.dtypes.split(","),
    )
    print(report.format_table(records))
    for path in report.save(records, args.out, meta=vars(args), with_plot=not args.no_plot):
        print(f"wrote {path}")
