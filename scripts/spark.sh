#!/usr/bin/env bash
# spark-submit / spark-sql from the project's environment with the cached Delta jars and settings:
#   bash scripts/spark.sh submit [spark options] jobs/denoise.py --config conf/local.yaml --ds 2026-11-02
#   bash scripts/spark.sh sql [--profile conf/local.yaml] -e "SELECT ... FROM dynamix.user_window_stats"
# `sql` also takes the profile's catalog settings (default conf/local.yaml: the Derby metastore under data/),
# so it sees the tables the jobs registered; a job's own --config sets them for `submit`.
# `submit` also passes the job profile's launch-time settings (spark.driver.memory as --driver-memory, the
# other spark.driver.* / spark.executor.* keys as --conf), which the job's SparkSession builder can no longer
# apply once spark-submit has started the driver JVM; an option given here wins over the profile's. And it
# builds a --py-files dist/dynamix_pyfiles.zip that is missing or older than the sources
# (scripts/build_pyfiles.sh). Both in dynamix_spark/submit.py.
#   bash scripts/spark.sh history start|stop: the history server over the jobs' event logs (data/spark-events).
# Run from the repository root: the local profile's paths (data/...) are relative to it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
export SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
tool="${1:-}"; shift || true
case "$tool" in
  submit)
    args="$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m dynamix_spark.submit "$@")"
    mapfile -t SPARK_ARGS <<< "$args"
    exec "$SPARK_HOME/bin/spark-submit" "${SPARK_ARGS[@]}" "$@" ;;
  sql)
    profile="conf/local.yaml"
    if [ "${1:-}" = "--profile" ]; then profile="$2"; shift 2; fi
    args="$("$PY" -m dynamix_spark.session --spark-submit-args --catalog-of "$profile")"
    mapfile -t SPARK_ARGS <<< "$args"
    exec "$SPARK_HOME/bin/spark-sql" "${SPARK_ARGS[@]}" "$@" ;;
  history)
    # Spark's history server over the jobs' event logs (conf/local.yaml: spark.eventLog.dir), on
    # http://127.0.0.1:18080 (HISTORY_PORT); its log and pid file under data/ (HISTORY_RUN_DIR); another
    # event-log folder with EVENT_LOG_DIR. `history start|stop`.
    events="${EVENT_LOG_DIR:-$ROOT/data/spark-events}"; run="${HISTORY_RUN_DIR:-$ROOT/data}"
    mkdir -p "$events" "$run/logs" "$run/pids"
    export SPARK_LOG_DIR="$run/logs" SPARK_PID_DIR="$run/pids" SPARK_IDENT_STRING=dynamix
    export SPARK_HISTORY_OPTS="-Dspark.history.fs.logDirectory=file:$events -Dspark.history.ui.port=${HISTORY_PORT:-18080} -Dspark.ui.host=127.0.0.1 ${SPARK_HISTORY_OPTS:-}"
    case "${1:-}" in
      start) exec "$SPARK_HOME/sbin/start-history-server.sh" ;;
      stop) exec "$SPARK_HOME/sbin/stop-history-server.sh" ;;
      *) echo "usage: scripts/spark.sh history start|stop" >&2; exit 2 ;;
    esac ;;
  *) echo "usage: scripts/spark.sh submit|sql|history ..." >&2; exit 2 ;;
esac
