#!/usr/bin/env bash
# spark-submit / spark-sql from the project's environment with the cached Delta jars and settings:
#   bash scripts/spark.sh submit [spark options] jobs/denoise.py --config conf/local.yaml --ds 2026-11-02
#   bash scripts/spark.sh sql -e "SELECT ..."
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
export SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
tool="$1"; shift
# shellcheck disable=SC2046
case "$tool" in
  submit) exec "$SPARK_HOME/bin/spark-submit" $("$PY" -m dynamix_spark.session --spark-submit-args) "$@" ;;
  sql) exec "$SPARK_HOME/bin/spark-sql" $("$PY" -m dynamix_spark.session --spark-submit-args) "$@" ;;
  *) echo "usage: scripts/spark.sh submit|sql ..." >&2; exit 2 ;;
esac
