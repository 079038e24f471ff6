"""Time minioptim's ``step()`` and ``zero_grad()`` against torch.optim.

Run it as ``python -m minioptim.bench`` (or ``make bench``); ``--help`` lists the options,
``--device cuda`` runs it on a GPU. From Python (the book does this)::

    from minioptim import bench
    records = bench.run(scale=0.01, repeats=3)
    print(bench.format_table(records))
    bench.plot(records)

One module per responsibility:

- :mod:`~minioptim.bench.cases`: what is optimized (parameter sets);
- :mod:`~minioptim.bench.contenders`: one record per optimizer, the bytes its step must
  move in each precision mode, and the implementations that race (minioptim's default,
  reference and compiled paths and its precision modes, torch's for-loop, foreach and
  fused ones), with :mod:`~minioptim.bench.baselines` where torch has none
  (SignSGD, Lion) and :mod:`~minioptim.bench.student`, a student's RMSprop;
- :mod:`~minioptim.bench.measure`: clocks (device and host time, round-robin medians)
  and the copy and triad bandwidths; :mod:`~minioptim.bench.memory`: state and peaks;
- :mod:`~minioptim.bench.suites`: the benchmarks, each returning records (dicts), and
  :mod:`~minioptim.bench.training`: the end-to-end one, a small transformer's iteration;
- :mod:`~minioptim.bench.report`: tables, a plot and files, and ``records.jsonl``,
  appended record by record as they are measured (:func:`load` reads it back);
- :mod:`~minioptim.bench.cli`: the command line.

How the numbers are taken:

- **Same work.** Every contender gets its own copy of the same parameters and gradients
  (random, seeded). Gradients stay fixed between steps: we time the optimizer, not a model
  (except in the training suite).
- **Fair timing.** All contenders of a comparison live in one process and are timed in
  turn, round-robin, one call each, for ``repeats`` rounds; we report the median. On CUDA
  the device is synchronized before each call and the call is timed with CUDA events; the
  host time, until the call returns, is recorded too.
- **Roofline.** An optimizer step is memory-bound: it reads and writes each parameter's
  value, gradient and state once and does little arithmetic. We compare the achieved bytes
  per second with a copy (and a triad) measured in the same run.
- **Ratios** are against the fastest torch contender of the same comparison.
"""

from .cases import SETS, convnet_shapes, few_large_shapes, llm_shapes, many_small_shapes, scaled
from .contenders import OPTIMIZERS
from .measure import environment
from .report import format_table, load, plot, save, summary_markdown
from .suites import QUICK, SUITES, run

__all__ = [
    "OPTIMIZERS",
    "QUICK",
    "SETS",
    "SUITES",
    "convnet_shapes",
    "environment",
    "few_large_shapes",
    "format_table",
    "llm_shapes",
    "load",
    "many_small_shapes",
    "plot",
    "run",
    "save",
    "scaled",
    "summary_markdown",
]
