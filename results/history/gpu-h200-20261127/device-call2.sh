#!/usr/bin/env bash
# Second device call: run_all at the gpu scale (1 CNN, the five 5cnns members, Figure 1 first;
# then everything, as time allows), the GPU tests in between.
set -uo pipefail
start=$(date +%s); budget=${BUDGET:-580}
left() { echo $(( budget - ($(date +%s) - start) )); }
export PYTHONUNBUFFERED=1 PYTHON=python3 ALEXNET_PLAN_SECONDS=5 ALEXNET_CODE_VERSION=${COMMIT:-unknown}
O=${OUT:-/tmp/out}; mkdir -p "$O"
exec > >(tee "$O/device2.log") 2>&1
W=/dev/shm/alexnet; mkdir -p $W
pack() { tar czf "$O/results.tgz" results $(ls $W/runs/*/*/*/log.jsonl $W/runs/*/*/*/config.json 2>/dev/null) 2>/dev/null; }
stamp() { echo "-- $(date -u +%T) ($(left) s left): $*"; }
stamp "start"; nvidia-smi -L
t=$(date +%s); timeout -k 15 $(( $(left) - 150 )) bash reproduce/run_all.sh --work $W --experiments 1cnn,5cnns,fig1; rc=$?
stamp "run_all 1cnn,5cnns,fig1: exit $rc in $(( $(date +%s) - t )) s"; pack
t=$(date +%s); timeout 70 $PYTHON -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tail -25; stamp "gpu tests done in $(( $(date +%s) - t )) s"
if [ "$(left)" -gt 60 ]; then
  t=$(date +%s); timeout -k 10 $(( $(left) - 20 )) bash reproduce/run_all.sh --work $W; rc=$?
  stamp "run_all (all): exit $rc in $(( $(date +%s) - t )) s"; pack
fi
stamp end
