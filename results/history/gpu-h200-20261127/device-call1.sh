#!/usr/bin/env bash
# One device call: the GPU tests (unless SKIP_TESTS=1), the gpu-scale run_all (resumes where a
# previous call stopped), then the benchmarks while time is left. BUDGET: seconds for this call.
set -uo pipefail
start=$(date +%s); budget=${BUDGET:-560}
left() { echo $(( budget - ($(date +%s) - start) )); }
export PYTHONUNBUFFERED=1 PYTHON=${PYTHON:-python3} ALEXNET_PLAN_SECONDS=10 ALEXNET_CODE_VERSION=${COMMIT:-unknown}
O=${OUT:-/tmp/out}; mkdir -p "$O"
exec > >(tee "$O/device${CALL:-1}.log") 2>&1
W=/dev/shm/alexnet; mkdir -p $W || W=$PWD
pack() { tar czf "$O/results.tgz" results $(ls $W/runs/*/*/*/log.jsonl $W/runs/*/*/*/config.json 2>/dev/null) 2>/dev/null; }
echo "== machine ($(date -u)), work $W: $(ls $W/runs/*/*/ 2>/dev/null | tr '\n' ' ')"
nvidia-smi -L; nproc; free -g | head -2; df -h /dev/shm . | cat; ls -d .git 2>&1
$PYTHON -c "import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.get_device_name(0))"
if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== gpu tests ($(left) s left)"
  t=$(date +%s); timeout 100 $PYTHON -m pytest -q -m gpu tests -p no:cacheprovider; echo "gpu tests: exit $? in $(( $(date +%s) - t )) s"
fi
echo "== run_all ($(left) s left)"
t=$(date +%s); timeout -k 20 $(( $(left) - 30 )) bash reproduce/run_all.sh --work $W ${RUNALL_ARGS:-}; rc=$?
echo "run_all: exit $rc in $(( $(date +%s) - t )) s"
pack
cache=$(ls -d $W/cache/synthetic-${CACHE_GLOB:-100x80x20}* 2>/dev/null | head -1)
if [ $rc = 0 ] && [ "$(left)" -gt 80 ]; then
  echo "== bench faithful b128 ($(left) s left), cache $cache"
  t=$(date +%s); timeout -k 5 $(( $(left) - 12 )) $PYTHON -m tools.bench --device ${DEV:-cuda} --batch 128 --profile ${BENCH_ARGS:-} --cache "$cache"; echo "bench: exit $? in $(( $(date +%s) - t )) s"
  pack
fi
if [ $rc = 0 ] && [ "$(left)" -gt 100 ]; then
  echo "== bench fast b512 ($(left) s left)"
  t=$(date +%s); timeout -k 5 $(( $(left) - 10 )) $PYTHON -m tools.bench --device ${DEV:-cuda} --batch 512 --fast ${BENCH_ARGS:-} --cache "$cache"; echo "bench fast: exit $? in $(( $(date +%s) - t )) s"
  pack
fi
echo "== end ($(left) s left)"
