#!/usr/bin/env bash
# The experiments (issue 8): DynamiX Tables 2 and 3 (5 arms x 3 seeds) and a DynInt ablation on the lake
# (generated and built first if missing), report in docs/EXPERIMENTS.md + docs/experiments.json + PNGs.
#   bash scripts/experiments.sh [--seeds N] [--raw-root PATH] [--out DIR] [--fresh] [--set KEY=VALUE ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
# The command runs in the training environment (.venv-train); it calls the pipeline's job commands in the Spark
# side's environment (.venv) as subprocesses when the lake has to be built (training/spark_side.py).
SPARK_PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$SPARK_PY" PYSPARK_DRIVER_PYTHON="$SPARK_PY" DYNAMIX_SPARK_PYTHON="$SPARK_PY"
exec "$ROOT/.venv-train/bin/python" -m training.experiments --config "${CONFIG:-conf/local.yaml}" "$@"
