#!/usr/bin/env bash
# The main job: bash reproduce/run_all.sh [options]
# Stages: environment → model summary → (data → train → evaluate → tables → figures,
# as the data, engine and reproduce issues land).
set -euo pipefail
source "$(dirname "$0")/../tools/env.sh"
cd "$ROOT"
echo "== model (§3.5): the paper profile on this machine's default devices"
"$PY" -m alexnet.model "$@"
