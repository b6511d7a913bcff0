#!/usr/bin/env bash
# The main job on a fresh machine: set-up (once), generate the default dataset, run the nightly pipeline
# over it with local Spark, and say where the tables are.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
CONFIG="${CONFIG:-conf/local.yaml}"
START="$("$PY" -c 'import sys; from dynamix_spark.config import load_config; print(load_config(sys.argv[1]).generator.start_date)' "$CONFIG")"
END="$("$PY" -c 'import sys, datetime as d; from dynamix_spark.config import load_config; g = load_config(sys.argv[1]).generator; print(d.date.fromisoformat(g.start_date) + d.timedelta(days=g.days - 1))' "$CONFIG")"
echo "== generating raw logs $START .. $END"
"$PY" jobs/generate_logs.py --config "$CONFIG" "$@"
echo "== nightly pipeline $START .. $END"
"$PY" jobs/nightly.py --config "$CONFIG" --ds "$START" --until "$END" "$@" > data/nightly_report.json
"$PY" scripts/summary.py --config "$CONFIG" --report data/nightly_report.json
