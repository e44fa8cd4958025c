#!/usr/bin/env bash
# The main job: bash reproduce/run_all.sh [--imagenet DIR | --data DIR]
#
# Stages, each skipped when already done:
#   1. data: the embedded synthetic dataset (default), ILSVRC-2012 archives
#      (--imagenet DIR) or an ImageFolder tree (--data DIR), prepared once into cache/
#   2. model: the per-layer table of the paper net on this machine's devices
# Training, evaluation, tables and figures are added by the engine and
# reproduce issues.
set -euo pipefail
source "$(dirname "$0")/../tools/env.sh"
cd "$ROOT"

DATA_ARGS=(--synthetic)
while [ "$#" -gt 0 ]; do
    case "$1" in
        --imagenet) DATA_ARGS=(--imagenet "${2:?--imagenet needs a folder}"); shift 2 ;;
        --data) DATA_ARGS=(--data "${2:?--data needs a folder}"); shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

echo "== 1. data: prepare (§2: 256×256, mean image, RGB PCA)"
"$PY" -m tools.prepare "${DATA_ARGS[@]}"
echo "== 2. model (§3.5): the paper profile on this machine's default devices"
"$PY" -m alexnet.model
