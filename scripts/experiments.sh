#!/usr/bin/env bash
# The experiments (issue 8): DynamiX Tables 2 and 3 (5 arms x 3 seeds) and a DynInt ablation on the lake
# (generated and built first if missing), report in docs/EXPERIMENTS.md + docs/experiments.json + PNGs.
#   bash scripts/experiments.sh [--seeds N] [--raw-root PATH] [--out DIR] [--fresh] [KEY=VALUE ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
exec "$PY" -m training.experiments --config "${CONFIG:-conf/local.yaml}" "$@"
