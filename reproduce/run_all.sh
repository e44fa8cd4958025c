#!/usr/bin/env bash
# The main job. bash reproduce/run_all.sh --help for the options.
# Builds the environment if needed (tools/env.sh), then runs `python -m reproduce.run_all`:
# data → train → evaluate → tables → figures, each stage skipped when done.
set -euo pipefail
source "$(dirname "$0")/../tools/env.sh"
cd "$ROOT"
exec "$PY" -m reproduce.run_all "$@"
