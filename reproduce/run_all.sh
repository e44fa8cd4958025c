#!/usr/bin/env bash
# The main job. bash reproduce/run_all.sh --help for the options.
# Builds the environment if needed (tools/env.sh), then runs reproduce/run_all.py:
# data → train → evaluate → tables → figures, each stage skipped when done.
set -euo pipefail
source "$(dirname "$0")/../tools/env.sh"
cd "$ROOT"
exec "$PY" reproduce/run_all.py "$@"
