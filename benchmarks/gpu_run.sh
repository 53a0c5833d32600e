#!/usr/bin/env bash
# The ONE device check of the GPU profile (docs/benchmarks.md "Running on a GPU").
#
# NOT RUN YET: no GPU was lent to the session that wrote it. Its code path is exercised on every
# test run by the CPU smoke mode (`python -m benchmarks.bench --profile gpu --smoke`, run by
# tests/bench/test_gpu_profile_smoke.py); only the torch.cuda calls differ (bench.CudaOps vs
# bench.FakeCudaOps).
#
# What it measures, in one process, on real-size random-weight configs in bf16:
#   - W1 and W2, every format, ours (LocalReranker) vs the reference, side by side (best of 3);
#   - MFU (model FLOPs / time / 790 TFLOP/s, the H200's measured bf16 matmul rate) on every
#     row; the target is W2 >= 50 %;
#   - W4 for every format: 16 concurrent arerank callers vs the same calls one after another;
#   - the OOM back-off: W2 of ctxl-v2 as ONE batch under a memory cap of ~4,096 tokens of
#     activations above the weights (torch.cuda.set_per_process_memory_fraction): the engine
#     must halve until the batches fit and score like the normal run.
# Budget: <= 8 minutes (the benchmark itself is killed at 470 s; whatever finished is in
# $OUT/gpu-local.partial.json).
#
# Usage, from the repository root on the device machine (no network needed; models are built
# locally from random weights):
#   bash benchmarks/gpu_run.sh [OUT_DIR]        # default OUT_DIR: $OUT, else /tmp/bench-gpu
# Results: OUT_DIR/gpu.md (the tables), gpu.json (raw), env.txt (versions), log.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-/tmp/bench-gpu}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$PY" - <<'PYEOF' | tee "$OUT_DIR/env.txt"
import importlib

import torch

print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
for name in ("transformers", "tokenizers", "safetensors", "sentence_transformers",
             "mxbai_rerank", "flash_attn"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # report, do not fail: the benchmark says what it fell back to
        print(name, "MISSING", type(exc).__name__)
PYEOF

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible: nothing to measure" >&2
    exit 3
fi
FORMATS="ctxl-v2,mxbai-v2,qwen3,cross-encoder"
if ! "$PY" -c "import sentence_transformers" 2>/dev/null; then
    echo "sentence-transformers is missing: no cross-encoder reference, cross-encoder skipped" >&2
    FORMATS="ctxl-v2,mxbai-v2,qwen3"
fi

timeout 470 "$PY" -m benchmarks.bench --profile gpu --parts local \
    --formats "$FORMATS" --workloads W1,W2 --w4-formats "$FORMATS" --oom-formats ctxl-v2 \
    --repeats 3 --model-dir "${MODEL_DIR:-/tmp/bench-gpu-models}" --out "$OUT_DIR" \
    2>&1 | tee "$OUT_DIR/log.txt"
