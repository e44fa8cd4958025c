#!/usr/bin/env bash
# The test suite: bash tests/run.sh [pytest args]
# Installs what it needs on first use (see tools/env.sh). CI skips tests marked
# slow; run them by hand with: bash tests/run.sh -m slow
# Two pytest processes (pytest-xdist): most tests wait on one-thread training
# subprocesses, so two share the 2 cores of CI (measured: 297 s against 382 s
# in one process). --dist worksteal: a worker that runs out takes queued tests from the
# other (no faster than --dist load on its own: 345 against 338 s; the gain came from one
# thread per worker, tests/conftest.py: 276 s, 2026-12-04). Another -n in the arguments
# wins; -n 0 runs in one process.
set -euo pipefail
export ALEXNET_TESTS=1  # tools/env.sh: pytest and the test extra are needed too
source "$(dirname "$0")/../tools/env.sh"
cd "$ROOT"
"$PY" -m ruff check --quiet .  # the style pyproject.toml sets ([tool.ruff]); a finding fails the suite
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec "$PY" -m pytest -q -n 2 --dist worksteal "$@"
