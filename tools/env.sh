# Sourced by reproduce/run_all.sh and tests/run.sh. Sets PY to a Python that can
# import the project and its dependencies, building .venv from pyproject.toml
# when none can. Order: $PYTHON if set; ./.venv; the active python3 (e.g. the
# conda env of environment.yml); else a new .venv (pip, about 6 GB with torch).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_alexnet_can_run() {
    (cd "$ROOT" && "$1" -c 'import torch, torchvision, PIL, numpy, sklearn, scipy, tqdm, matplotlib, pytest, alexnet' ) >/dev/null 2>&1
}
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
    _alexnet_can_run "$PY" || { echo "error: PYTHON=$PY cannot import the project's dependencies; pip install -e '$ROOT[test]' into it, or unset PYTHON" >&2; exit 2; }
elif [ -x "$ROOT/.venv/bin/python" ] && _alexnet_can_run "$ROOT/.venv/bin/python"; then
    PY="$ROOT/.venv/bin/python"
elif command -v python3 >/dev/null && _alexnet_can_run python3; then
    PY="$(command -v python3)"
else
    echo "setup: creating $ROOT/.venv and installing from pyproject.toml (torch is a large download; once only)" >&2
    BASE_PY="$(command -v python3.11 || command -v python3)" || { echo "error: no python3 found; install Python 3.11" >&2; exit 2; }
    "$BASE_PY" -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
    "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[test]"
    PY="$ROOT/.venv/bin/python"
    _alexnet_can_run "$PY" || { echo "error: the install into .venv did not give a working environment" >&2; exit 2; }
fi
export PY
