"""impl="auto" on a CPU: the fast path against impl="compiled", round-robin.

Run from the repository root: python bench-results/cpu-2026-12-04/auto/measure.py
"""

import json

import torch

from minioptim import bench

torch.set_num_threads(1)
records = bench.run(
    ("llm", "few-large"),
    ("sgd", "adam", "adamw", "signsgd", "lion"),
    suites=("steps",),
    repeats=31,
    warmup=2,
    scale=0.02,
    dtypes=("float32", "bfloat16"),
    reference=False,
    torch_variants=("fused",),
    device="cpu",
)
with open("records.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
steps = {(r["set"], r["optimizer"], r["dtype"], r["contender"]): r["ms"]
         for r in records if r["kind"] == "step"}  # fmt: skip
for (set_name, name, dtype, contender), ms in steps.items():
    if contender == "minioptim compiled":
        fast = steps[set_name, name, dtype, "minioptim"]
        print(f"{set_name:10s} {name:8s} {dtype:9s} fast {fast:7.2f} ms  "
              f"compiled {ms:7.2f} ms  compiled/fast {ms / fast:.2f}")  # fmt: skip
