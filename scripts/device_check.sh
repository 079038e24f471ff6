#!/usr/bin/env bash
# `make device-check`: everything minioptim checks on a CUDA GPU, in one run, into one
# folder (default device-check/, or $1). Runs with the machine's own python3 and PyTorch
# (a GPU build), not the CPU-only .venv: minioptim is imported from this checkout.
#
#   1. tests/test_cuda.py and tests/test_devices.py: every optimizer against its reference
#      on the device, half precision, no host syncs in step(), aliases on the device,
#      CUDA-graph capture refused, checkpoints moving between CPU and GPU; and
#      impl="auto" taking the compiled rule (Triton) without a host synchronization, and
#      a training step under torch.compile(mode="reduce-overhead") equal to eager steps;
#   2. the benchmark's quick preset (`--quick`: every optimizer in float32 and bfloat16
#      on the many-small and llm sets, minioptim's default and compiled paths against
#      torch's foreach and fused ones, and the host overhead), each record appended to
#      bench/records.jsonl as it is measured;
#   3. the memory suite: bytes per parameter in each precision mode, on the device.
#
# Sized for a few minutes on an H100/H200-class GPU; each part keeps what it wrote if a
# time limit stops it.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-device-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
                 torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
} | tee "$out/device.txt"

python3 -m pytest tests/test_cuda.py tests/test_devices.py -q -rs -p no:cacheprovider \
    tests/test_compiled.py -k "not test_compiled.py or on_cuda" 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}

# SIGTERM at the limit: the benchmark then writes its tables from what it measured.
timeout 150 python3 -m minioptim.bench --device cuda --quick --out "$out/bench" \
    2>&1 | tee "$out/bench.txt"

# Bytes per parameter of each optimizer in each precision mode, checked against
# torch.cuda.memory_allocated (the README's memory table, measured on the device).
timeout 60 python3 -m minioptim.bench --device cuda --suite memory --sets llm --scale 0.01 \
    --out "$out/memory" 2>&1 | tee "$out/memory.txt"

echo "device-check: tests exit status $tests; results in $out/"
exit "$tests"
