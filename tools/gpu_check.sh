#!/usr/bin/env bash
# The GPU checks in one call, for whoever is lent a GPU (about 5 minutes on one H100/H200):
#   bash tools/gpu_check.sh            # on the GPU machine ($OUT: where copies of the results go)
#   bash tools/gpu_check.sh --dry-run  # anywhere: the same steps with the CUDA parts skipped (about 2 min on 2 cores)
#   PYTHON=python3 bash tools/gpu_check.sh  # a GPU machine with its own torch and no internet (env.sh warns
#                                           # that torch is not the pinned version, and uses it)
# Without CUDA it always runs as a dry run and says so; its numbers are then no benchmark.
# 1. the GPU-marked tests: the model on ("cuda:0","cpu"), ("cuda:0","cuda:0") and
#    ("cuda:0","cuda:0") with one CUDA stream per tower, against the all-CPU model in
#    float64 (logits and gradients); float32 SGD steps with and without tower streams;
#    the GPU loader (CPU decoder, and nvJPEG) against the CPU loader, batch for batch; the resident
#    GPU loader (the split decoded once into GPU memory) against decoding each batch; nvJPEG decoding
#    leaving memory that queued kernels still read alone (pytorch/vision#9606); faithful evaluation's
#    backend switches (TF32 off, cuDNN deterministic) and its logits against float64; a run resumed on
#    the GPU equal to an uninterrupted one bit for bit; fast mode wrapped in DDP (NCCL, one process)
#    without DDP's gradient-stride warning (tests/test_engine.py, "on one GPU");
# 2. tools/bench.py, faithful float32 at batch 128 (tower streams, what cuDNN determinism costs
#    (step/faithful-autotuned), torchvision's alexnet,
#    the data paths with and without the resident set, e2e/train and e2e/train-decode, peak memory
#    per tower device, torch.profiler's top 15 ops),
#    then the fast mode at batch 512 (e2e/train-fast).
# Targets (one H100/H200): faithful step >= 8,000 img/s (floor 6,500); fast e2e >= 30,000;
# GPU data >= 40,000; e2e >= 0.9 x step in both modes; peak memory <= 3 GiB per tower device.
# Results: results/benchmarks/bench-gpu-*.json and profile-gpu-*.txt (copied to $OUT when set).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export PYTHONUNBUFFERED=1
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    dry=1
    echo "gpu_check: no CUDA device here: DRY RUN. The GPU tests are collected and skipped; the benchmark"
    echo "gpu_check: runs on the CPU with --quick (one step of each kind) to check the script, not to measure."
fi
status=0
if [ "$dry" = 1 ]; then
    out_dir="$(mktemp -d)"  # a dry run's numbers never go to results/
    timeout 300 "$PY" -m tools.prepare --synthetic --classes 4 --train-per-class 16 --val-per-class 4 \
        --cache "$out_dir/cache" --raw "$out_dir/data" --no-progress
    "$PY" -m pytest -q -m gpu tests -p no:cacheprovider || { [ $? = 5 ] || status=1; }
    if torch_cuda=$("$PY" -c "import torch; print(torch.cuda.is_available())") && [ "$torch_cuda" = True ]; then
        bench_device=cuda; else bench_device=cpu; fi
    timeout 600 "$PY" -m tools.bench --device "$bench_device" --batch 4 --quick --profile --fast --no-compile \
        --cache "$out_dir/cache" --out "$out_dir/bench" || status=1
    echo "gpu_check: DRY RUN finished (exit $status); the GPU parts were skipped. Outputs in $out_dir"
    exit "$status"
fi
nvidia-smi -L || true
"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))"
timeout 90 "$PY" -m tools.prepare --synthetic --no-progress
timeout 150 "$PY" -m pytest -q -m gpu tests -p no:cacheprovider || { echo "GPU tests FAILED (see above)"; status=1; }
timeout 150 "$PY" -m tools.bench --device cuda --batch 128 --profile || { echo "faithful benchmark failed or timed out"; status=1; }
timeout 200 "$PY" -m tools.bench --device cuda --batch 512 --fast || { echo "fast-mode benchmark failed or timed out"; status=1; }
if [ -n "${OUT:-}" ]; then cp results/benchmarks/bench-gpu-*.json results/benchmarks/profile-gpu-*.txt "$OUT"/ 2>/dev/null || true; fi
exit "$status"
