"""What minioptim's gradient copy-in costs when gradients are set to ``None`` every step.

HF Trainer and accelerate call ``model.zero_grad()`` / ``optimizer.zero_grad(set_to_none=True)``
every step, so backward hands each parameter a fresh gradient tensor instead of adding
into the buffer's alias; the next ``step()`` copies every gradient into the flat buffer
(one ``torch._foreach_copy_``) and re-binds ``p.grad``. With minioptim's default
``optimizer.zero_grad()`` (one fill) backward accumulates straight into the buffer and
``step()`` copies nothing.

For each number of 64×64 float32 tensors this times, interleaved, median over repeats,
one training iteration split into ``zero_grad``, backward (a loss that touches every tensor
once) and ``step`` for::

    default       minioptim.AdamW, optimizer.zero_grad()               (fill, no copy)
    set-to-none   minioptim.AdamW, optimizer.zero_grad(set_to_none=True) (copy-in in step)
    torch fused   torch.optim.AdamW(fused=True), zero_grad() (sets None)   (for context)

and prints ms per step, the copy-in (set-to-none step minus default step), the same copy
as one bare ``torch._foreach_copy_`` and the ratios.

    .venv/bin/python -m scripts.measure_set_to_none                 # 100 and 1000 tensors
    .venv/bin/python -m scripts.measure_set_to_none --tensors 2000 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import minioptim

PARTS = ("zero_grad", "backward", "step")


def setup(kind: str, count: int, size: int):
    torch.manual_seed(0)
    params = [torch.randn(size, size, requires_grad=True) for _ in range(count)]
    weights = [torch.randn(size, size) for _ in range(count)]
    if kind == "torch fused":
        optimizer = torch.optim.AdamW(params, lr=1e-3, fused=True)
    else:
        optimizer = minioptim.AdamW(params, lr=1e-3)
    set_to_none = kind != "default"

    def iteration() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=set_to_none)
        t1 = time.perf_counter()
        loss = sum((p * w).sum() for p, w in zip(params, weights, strict=True))
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    return iteration


def measure(count: int, size: int, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    kinds = ("default", "set-to-none", "torch fused")
    iterations = {kind: setup(kind, count, size) for kind in kinds}
    samples: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
    for i in range(warmup + repeats):
        for kind in kinds:  # interleaved, so drifts in machine speed hit every kind alike
            timing = iterations[kind]()
            if i >= warmup:
                samples[kind].append(timing)
    return {
        kind: {part: 1e3 * statistics.median(t[j] for t in timings) for j, part in enumerate(PARTS)}
        | {"total": 1e3 * statistics.median(sum(t) for t in timings)}
        for kind, timings in samples.items()
    }


def copy_alone(count: int, size: int, repeats: int) -> float:
    """ms of the copy by itself: one torch._foreach_copy_ of fresh tensors into the buffer."""
    flat = torch.zeros(count * size * size)
    slots = list(flat.view(count, size, size).unbind())
    fresh = [torch.randn(size, size) for _ in range(count)]
    timings = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        torch._foreach_copy_(slots, fresh)
        timings.append(time.perf_counter() - start)
    return 1e3 * statistics.median(timings[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensors", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--size", type=int, default=64, help="each tensor is size × size")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, minioptim {minioptim.__version__}, "
        f"{torch.get_num_threads()} threads, AdamW, float32, median of {args.repeats}, ms/step"
    )
    for count in args.tensors:
        r = measure(count, args.size, args.repeats, args.warmup)
        print(f"\n{count} tensors of {args.size}×{args.size} ({count * args.size**2:,} numbers)")
        print(f"  {'':12} {'zero_grad':>9} {'backward':>9} {'step':>9} {'total':>9}")
        for kind, t in r.items():
            print(f"  {kind:12} " + " ".join(f"{t[part]:9.3f}" for part in (*PARTS, "total")))
        default, none = r["default"], r["set-to-none"]
        copy = none["step"] - default["step"]
        print(
            f"  copy-in (set-to-none step - default step): {copy:.3f} ms, "
            f"{1e3 * copy / count:.2f} µs per tensor; the foreach copy alone: "
            f"{copy_alone(count, args.size, args.repeats):.3f} ms\n"
            f"  set-to-none / default: step {none['step'] / default['step']:.2f}×, "
            f"whole iteration {none['total'] / default['total']:.2f}×; "
            f"set-to-none / torch fused, whole iteration "
            f"{none['total'] / r['torch fused']['total']:.2f}×"
        )


if __name__ == "__main__":
    main()
