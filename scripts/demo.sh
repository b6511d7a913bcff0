#!/usr/bin/env bash
# The main job on a fresh machine: set-up (once), generate the default dataset, run the nightly pipeline
# over it with local Spark (denoise -> stats -> segments -> EBF examples), then a short DynInt training run.
# Each side in its own environment: the pipeline in .venv (Spark side), the training in .venv-train.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
PY="$ROOT/.venv/bin/python"
TRAIN_PY="$ROOT/.venv-train/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
CONFIG="${CONFIG:-conf/local.yaml}"
START="$("$PY" -c 'import sys; from dynamix_spark.config import load_config; print(load_config(sys.argv[1]).generator.start_date)' "$CONFIG")"
END="$("$PY" -c 'import sys; from dynamix_spark.config import load_config; from schemas.dates import add_days; g = load_config(sys.argv[1]).generator; print(add_days(g.start_date, g.days - 1))' "$CONFIG")"
echo "== generating raw logs $START .. $END"
"$PY" jobs/generate_logs.py --config "$CONFIG" "$@"
echo "== nightly pipeline $START .. $END"
"$PY" jobs/nightly.py --config "$CONFIG" --ds "$START" --until "$END" --report data/nightly_report.json "$@" > /dev/null
"$PY" scripts/summary.py --config "$CONFIG" --report data/nightly_report.json
echo "== short DynInt training run on ebf_examples (torchrun, ${NPROC:-2} processes, gloo on CPU / NCCL on GPU)"
OMP_NUM_THREADS=1 "$TRAIN_PY" -m torch.distributed.run --standalone --nproc_per_node="${NPROC:-2}" \
    training/train.py --config "$CONFIG"
echo "== training report: data/runs/<variant>-<policy>/ (report.json, summary.md, ne_curve.png)"
