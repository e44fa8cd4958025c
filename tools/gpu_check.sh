#!/usr/bin/env bash
# The GPU checks in one call, for whoever is lent a GPU (about 4–5 minutes on one H100/H200):
#   bash tools/gpu_check.sh
# 1. the GPU-marked tests: the model on ("cuda:0","cpu"), ("cuda:0","cuda:0") and
#    ("cuda:0","cuda:0") with one CUDA stream per tower, against the all-CPU model in
#    float64 (gradients); three float32 SGD steps with and without tower streams; the
#    GPU loader against the CPU loader;
# 2. tools/bench.py, faithful float32 at batch 128 (with tower streams), then the fast
#    mode at batch 512. Targets (issue 6): faithful step ≥ 6,500 img/s; fast e2e ≥ 30,000;
#    GPU data ≥ 40,000; e2e within 10% of step-only.
# Results: results/benchmarks/bench-gpu-*.json (copied to $OUT when $OUT is set).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))"
timeout 90 "$PY" -m tools.prepare --synthetic --no-progress
timeout 120 "$PY" -m pytest -q -m gpu tests || echo "GPU tests FAILED (see above)"
timeout 120 "$PY" -m tools.bench --device cuda --batch 128 || echo "faithful benchmark failed or timed out"
timeout 200 "$PY" -m tools.bench --device cuda --batch 512 --fast || echo "fast-mode benchmark failed or timed out"
if [ -n "${OUT:-}" ]; then cp results/benchmarks/bench-gpu-*.json "$OUT"/ 2>/dev/null || true; fi
