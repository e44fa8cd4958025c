#!/usr/bin/env bash
# A short GPU lease in as few calls as possible: what the GPU issue needs, most important first,
# inside a time budget; the same command again (the machine still warm) goes on where it stopped.
#
#   COMMIT=$(git rev-parse HEAD) PYTHON=python3 bash tools/gpu_session.sh   # on the lent machine
#   BUDGET=200 WORK=/tmp/s RUNALL_ARGS="--scale smoke --synthetic-size 4,12,4" bash tools/gpu_session.sh
#                                                  # anywhere: the same steps at a tiny scale, to check the script
#
# 1. the GPU tests (`pytest -m gpu`; once: a pass leaves a marker in the work folder);
# 2. the stability probes (below), each once: 200 steps of the fragile configurations, CPU and GPU decoder;
# 3. run_all at the gpu scale (RUNALL_ARGS: other options), in two passes: 1 CNN, the five
#    5cnns members (the baseline's replicates) and Figure 1 first, then every experiment.
#    Each pass is stopped with SIGINT when the budget runs out: every run checkpoints, and the
#    next call resumes it. Results: results/synthetic-gpu/ (RESULTS: another folder);
# 4. the faithful benchmark (tools.bench, batch 128, profile) when run_all finished and at least
#    BENCH_SECONDS (150) are left.
# Everything it prints goes to $OUT/session-N.log too, and after each step the results folder,
# the benchmark files and every run's log.jsonl and config.json are packed into $OUT/results.tgz
# ($OUT: the device tool's output folder; default /tmp/gpu-session-out).
#
# Two runs at once on the one GPU (not yet measured to be faster):
#   RUNALL_ARGS="--devices cuda:0,cuda:0 --devices cuda:0,cuda:0" bash tools/gpu_session.sh
# BUDGET: seconds for this call (default 560, under a 600-s call limit); WORK: data, cache and
# runs (default /dev/shm/alexnet: memory, where a 460 MB checkpoint takes well under a second);
# COMMIT: the code version the results record, where the machine's copy has no .git.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
budget=${BUDGET:-560}
left() { echo $(( budget - ($(date +%s) - start) )); }
export PYTHONUNBUFFERED=1 ALEXNET_PLAN_SECONDS=${ALEXNET_PLAN_SECONDS:-10}
[ -n "${COMMIT:-}" ] && export ALEXNET_CODE_VERSION=$COMMIT
out=${OUT:-/tmp/gpu-session-out}
work=${WORK:-/dev/shm/alexnet}
results=${RESULTS:-results/synthetic-gpu}
mkdir -p "$out" "$work"
call=1
while [ -e "$out/session-$call.log" ] || [ -e "$work/.session-$call" ]; do call=$((call + 1)); done
touch "$work/.session-$call"
exec > >(tee "$out/session-$call.log") 2>&1
stamp() { echo "== $(date -u +%T) ($(left) s left) $*"; }
pack() {
    tar czf "$out/results.tgz" --exclude=.lock "$results" $(ls results/benchmarks/*gpu* 2>/dev/null) \
        $(cd "$work" && ls -d runs/*/*/*/log.jsonl runs/*/*/*/config.json 2>/dev/null | sed "s|^|$work/|") \
        2>/dev/null
}
# run_all for at most $1 seconds (SIGINT, then SIGKILL 30 s later), with the remaining arguments
run_all_for() {
    local seconds=$1; shift
    if [ "$seconds" -lt 30 ]; then echo "(no time left for it)"; return 124; fi
    timeout -s INT -k 30 "$seconds" bash reproduce/run_all.sh --work "$work" --results "$results" \
        ${RUNALL_ARGS:-} "$@"
}

stamp "call $call: work $work, results $results, code ${COMMIT:-(from git)}"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi: not a GPU machine"
bash -c 'source tools/env.sh && "$PY" -c "import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA\")"'

if [ -e "$work/.gpu-tests-passed" ]; then
    stamp "GPU tests: passed in an earlier call"
else
    stamp "GPU tests"
    t=$(date +%s)
    timeout 150 bash tests/run.sh -q -m gpu -n 0 -p no:cacheprovider; rc=$?  # one process: one GPU
    stamp "GPU tests: exit $rc in $(( $(date +%s) - t )) s"
    [ $rc = 0 ] && nvidia-smi -L >/dev/null 2>&1 && touch "$work/.gpu-tests-passed"  # skipped is not passed
fi

# Stability probes (the stability issue): 200 steps of the fragile configurations at the gpu scale,
# each run's config as run_all trains it there (its stability setting chosen by
# reproduce.experiments.choose_stability, as everywhere), decoded on the CPU and by nvJPEG, in the
# runs' own faithful mode (cuDNN deterministic, not autotuned: alexnet.speed), every step logged;
# a non-finite loss is replayed at once (tools.replay: the run's arithmetic beside float64, with the
# run's own decoder), before anything else.
probe() {  # run decoder: a run of reproduce/experiments.py at the gpu scale
    local name=$1 decoder=$2
    local dir="$work/probes/$name-$decoder" config="$work/probes/$name.config.json"
    [ -e "$dir/.done" ] && return 0
    if [ "$(left)" -lt 120 ]; then echo "(no time left for probe $name-$decoder)"; return 124; fi
    mkdir -p "$work/probes"
    "$PY" -m reproduce.experiments --scale gpu --classes 100 --run "$name" > "$config" || return 0
    "$PY" -m alexnet.train --cache "$work/probe-cache" --run-dir "$dir" \
        --config "$config" --decoder "$decoder" --max-steps 200 --log-steps --no-progress
    local rc=$?
    stamp "probe $name-$decoder: exit $rc; its last step:"
    tail -n 1 "$dir/steps.jsonl" 2>/dev/null | cut -c 1-120
    [ $rc = 3 ] && "$PY" -m tools.replay "$dir"
    [ $rc != 124 ] && touch "$dir/.done"
    mkdir -p "$out/probes/$name-$decoder" && cp "$dir"/*.json "$dir"/*.jsonl "$out/probes/$name-$decoder/" 2>/dev/null
    return 0
}
PY=$(bash -c 'source tools/env.sh >/dev/null && echo "$PY"')
if "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    stamp "stability probes"
    [ -e "$work/probe-cache/meta.json" ] || "$PY" -m tools.prepare --synthetic --classes 100 --train-per-class 80 \
        --val-per-class 20 --raw "$work/probe-data" --cache "$work/probe-cache" --no-progress
    for decoder in cpu gpu; do
        for run in 1cnn no-dropout pool-z2 5cnns-seed2 5cnns-seed5; do probe "$run" "$decoder"; done
    done
    stamp "stability probes: done"
else
    stamp "stability probes: skipped (no CUDA)"
fi

stamp "run_all, first pass: 1cnn, 5cnns, fig1"
t=$(date +%s)
run_all_for $(( $(left) - 40 )) --experiments 1cnn,5cnns,fig1; rc=$?
stamp "run_all, first pass: exit $rc in $(( $(date +%s) - t )) s"
pack
if [ $rc = 0 ]; then
    stamp "run_all, every experiment"
    t=$(date +%s)
    run_all_for $(( $(left) - 40 )); rc=$?
    stamp "run_all, every experiment: exit $rc in $(( $(date +%s) - t )) s"
    pack
fi

if [ $rc = 0 ] && [ "$(left)" -gt "${BENCH_SECONDS:-150}" ]; then
    stamp "benchmark: faithful, batch 128"
    cache=$(ls -d "$work"/cache/synthetic-* 2>/dev/null | head -1)
    bash -c 'source tools/env.sh && exec timeout -s INT -k 10 "$0" "$PY" -m tools.bench --device cuda \
        --batch 128 --profile --cache "$1"' $(( $(left) - 20 )) "$cache"
    stamp "benchmark: exit $?"
    pack
fi
stamp "end of call $call (run_all exit $rc; 0 = all done, 130 or 124 = stopped for time: call again)"
