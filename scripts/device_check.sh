#!/usr/bin/env bash
# `make device-check`: everything minioptim checks on a CUDA GPU, in one run, into one
# folder (default device-check/, or $1). Runs with the machine's own python3 and PyTorch
# (a GPU build), not the CPU-only .venv: minioptim is imported from this checkout.
#
#   1. tests/test_cuda.py, tests/test_devices.py and test_compiled.py's CUDA tests: every
#      optimizer against its reference on the device, half precision, no host syncs in
#      step(), aliases on the device, CUDA-graph capture refused without capturable=True
#      and, with it, replays equal to eager steps (tests/test_capture.py, every optimizer,
#      float and tensor lr, and a whole training step in one graph), checkpoints moving
#      between CPU and GPU, the precision modes, the bytes per parameter against the
#      allocator; impl="auto" taking the compiled rule (Triton) without a host
#      synchronization, and a training step under torch.compile(mode="reduce-overhead")
#      equal to eager steps. In seven groups of tests that run at the same time (TESTS);
#   2. the precision suite on the llm set: Adam on bfloat16 parameters with stochastic
#      rounding, Kahan compensation and master weights, default and compiled paths,
#      against torch's foreach and fused bfloat16 steps, in GB/s and % of copy;
#   3. the benchmark's quick preset (`--quick`: every optimizer in float32 and bfloat16
#      on the many-small and llm sets, minioptim's default and compiled paths against
#      torch's foreach and fused ones, and the host overhead);
#   4. the memory suite: bytes per parameter in each precision mode, on the device.
#
# Budget: 4 minutes on an H100/H200-class machine, each part under its own `timeout`.
# Not yet timed on a GPU: estimated from ~3-4 s per cold compile of a rule's graph
# (~30 s for Muon's) and the quick preset's estimate (README):
#
#   part                     limit   estimate: cold inductor cache (warm)
#   device description        -        5 s
#   1. tests, 7 groups       100 s    60-100 s (30 s): as long as the largest group
#   2. precision, Adam        40 s    35 s (20 s): 355M random values, 3 graphs
#   3. quick benchmark        65 s    60 s (40 s): ~10 graphs the tests did not compile
#   4. memory                 25 s    15 s (10 s): graphs the tests compiled
#   total                    235 s
#
# The tests compile about 90 graphs of the rules (one per rule, options, dtype and
# precision mode; SGD's first step apart), one after the other in one process: 5-6
# minutes. The seven groups split them (half precision ~24, the precision modes' compiled
# rules ~16, the memory accounting ~15, the float32 rules ~12 in two groups, Muon's 2,
# the capture tests ~8 with float32 step tensors)
# and run at the same time, two compile workers each. Every compiled graph goes to an
# inductor cache in the output folder, which parts 2-4 (and a rerun into the same
# folder) read instead of compiling again. Each part keeps what it wrote if its limit
# stops it: a group of tests stopped so exits with status 124 and its log shows the
# tests it ran; the benchmark writes its tables from the records it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-device-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$(cd "$out" && pwd)/inductor-cache}"

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
                 torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
} | tee "$out/device.txt"

# The groups of tests: name and pytest -k expression. Together they select exactly what
# `-k "not test_compiled.py or on_cuda"` selects in the three files, each test once.
compiled=compiled_rule_matches_reference_on_cuda
apart="half_precision or $compiled or stochastic_and_kahan or bytes_per_parameter"
TESTS=(
    "half|test_cuda.py and half_precision"
    "cuda|test_devices.py or test_cuda.py and not ($apart)"
    "compiled|$compiled and not muon or test_compiled.py and on_cuda"
    "rounding|stochastic_and_kahan"
    "muon|$compiled and muon"
    "memory|bytes_per_parameter"
    "capture|test_capture.py and cuda"
)
pids=()
for group in "${TESTS[@]}"; do
    # two compile workers each: seven processes and their workers on 16 cores or more
    TORCHINDUCTOR_COMPILE_THREADS=2 timeout 100 python3 -m pytest -v -rs -p no:cacheprovider \
        tests/test_cuda.py tests/test_devices.py tests/test_compiled.py tests/test_capture.py \
        -k "${group#*|}" \
        >"$out/tests-${group%%|*}.txt" 2>&1 &
    pids+=("$!")
done
failed=0
: >"$out/tests.txt"
for i in "${!TESTS[@]}"; do
    wait "${pids[$i]}"
    status=$?
    name="${TESTS[$i]%%|*}"
    [ "$status" = 0 ] || failed=$((failed + 1))
    [ "$status" = 124 ] && status="124 (stopped at its time limit)"
    { tail -n 1 "$out/tests-$name.txt"; echo "exit status $status"; } |
        sed "s/^/[tests: $name] /" | tee -a "$out/tests.txt"
done

# SIGTERM at the limit: the benchmark then writes its tables from what it measured.
timeout 40 python3 -m minioptim.bench --device cuda --quick --suite precision --sets llm \
    --optimizers adam --out "$out/precision" 2>&1 | tee "$out/precision.txt"

timeout 65 python3 -m minioptim.bench --device cuda --quick --out "$out/bench" \
    2>&1 | tee "$out/bench.txt"

# Bytes per parameter of each optimizer in each precision mode, checked against
# torch.cuda.memory_allocated (the README's memory table, measured on the device).
timeout 25 python3 -m minioptim.bench --device cuda --suite memory --sets llm --scale 0.01 \
    --out "$out/memory" 2>&1 | tee "$out/memory.txt"

echo "device-check: $failed of ${#TESTS[@]} groups of tests failed; results in $out/"
exit $((failed > 0))
