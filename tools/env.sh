# Sourced by reproduce/run_all.sh and tests/run.sh. Sets PY to a Python that can
# import the project with the pinned torch and torchvision of pyproject.toml,
# building .venv when none can. Order: $PYTHON if set; ./.venv; the active
# python3 (e.g. the conda env of environment.yml); else a new .venv.
# A PYTHON with another torch/torchvision than the pins (e.g. a GPU machine's own
# CUDA build, which cannot be replaced offline) is used with a warning, as long as
# it imports the project; the other choices must match the pins.
# tests/run.sh sets ALEXNET_TESTS=1: then pytest (and the `test` extra) is
# needed too; run_all does not need it.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu installs torch from
# that index (CPU-only wheels, a much smaller download) when .venv is built.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_alexnet_extra() { if [ -n "${ALEXNET_TESTS:-}" ]; then echo "[test]"; fi; }
_alexnet_python_ok() {  # Python ≥ 3.10, else one line saying what was found and what to install
    local found
    found="$("$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" \
        || { echo "error: $1 does not run as Python; install Python 3.11 (3.10 or newer)" >&2; return 1; }
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
        || { echo "error: $1 is Python $found; this project needs Python 3.10 or newer: install Python 3.11 (e.g. conda env create -f environment.yml) and run again, or set PYTHON=/path/to/python3.11" >&2; return 1; }
}
_alexnet_can_run() {  # imports the project (else 1), with torch and torchvision at pyproject.toml's pins (else 3)
    (cd "$ROOT" && "$1" - "${ALEXNET_TESTS:-}" >/dev/null 2>&1) <<'EOF'
import re, sys
import torch, torchvision, PIL, numpy, sklearn, scipy, tqdm, matplotlib, alexnet
if sys.argv[1]:
    import pytest, xdist, ruff
pins = dict(re.findall(r'"(torch|torchvision)==([^"]+)"', open("pyproject.toml").read()))
have = {"torch": torch.__version__, "torchvision": torchvision.__version__}
sys.exit(3 if any(have[k].split("+")[0] != v for k, v in pins.items()) else 0)
EOF
}
_alexnet_versions() {
    "$1" -c 'import torch, torchvision; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")' 2>/dev/null \
        || echo "no torch"
}
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
    _alexnet_python_ok "$PY" || exit 2
    _alexnet_rc=0; _alexnet_can_run "$PY" || _alexnet_rc=$?
    if [ "$_alexnet_rc" = 3 ]; then
        echo "warning: PYTHON=$PY has $(_alexnet_versions "$PY"), not the pins of pyproject.toml ($(grep -o 'torch==[^"]*' "$ROOT/pyproject.toml"), $(grep -o 'torchvision==[^"]*' "$ROOT/pyproject.toml")); using it as asked" >&2
    elif [ "$_alexnet_rc" != 0 ]; then
        echo "error: PYTHON=$PY cannot import the project (it has: $(_alexnet_versions "$PY")); pip install -e '$ROOT$(_alexnet_extra)' into it, or unset PYTHON" >&2; exit 2
    fi
elif [ -x "$ROOT/.venv/bin/python" ] && _alexnet_can_run "$ROOT/.venv/bin/python"; then
    PY="$ROOT/.venv/bin/python"
elif command -v python3 >/dev/null && _alexnet_python_ok python3 2>/dev/null && _alexnet_can_run python3; then
    PY="$(command -v python3)"
else
    BASE_PY="$(command -v python3.11 || command -v python3)" || { echo "error: no python3 found; install Python 3.11 (3.10 or newer)" >&2; exit 2; }
    _alexnet_python_ok "$BASE_PY" || exit 2
    if [ -x "$ROOT/.venv/bin/python" ]; then
        echo "setup: $ROOT/.venv lacks what this needs ($(_alexnet_versions "$ROOT/.venv/bin/python")); installing into it" >&2
    else
        echo "setup: creating $ROOT/.venv from pyproject.toml. First install only: torch and torchvision are about" \
             "5 GB to download with their CUDA libraries (CPU-only wheels, a much smaller download:" \
             "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu); pip shows its progress below." >&2
        "$BASE_PY" -m venv "$ROOT/.venv" || { echo "error: $BASE_PY -m venv failed (on Debian/Ubuntu: apt install python3-venv)" >&2; exit 2; }
        "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
    fi
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$ROOT/.venv/bin/python" -m pip install --progress-bar on --index-url "$TORCH_INDEX_URL" \
            "$(grep -o 'torch==[^"]*' "$ROOT/pyproject.toml")" "$(grep -o 'torchvision==[^"]*' "$ROOT/pyproject.toml")"
    fi
    "$ROOT/.venv/bin/python" -m pip install --progress-bar on -e "$ROOT$(_alexnet_extra)"
    PY="$ROOT/.venv/bin/python"
    _alexnet_can_run "$PY" || { echo "error: the install into .venv did not give a working environment ($(_alexnet_versions "$PY"))" >&2; exit 2; }
fi
export PY
