#!/usr/bin/env bash
# A Spark standalone cluster on this machine: one master and two workers on 127.0.0.1, started with the
# `spark-class` launcher of the pyspark wheel in .venv. Logs and pid files under data/cluster/ (or
# $CLUSTER_DIR); `stop` stops exactly the processes `start` started (their pids, checked to still be
# those JVMs), and the executors they launched go with their worker.
#   bash scripts/cluster.sh start|stop|status
#   bash scripts/spark.sh submit --master spark://127.0.0.1:7077 jobs/nightly.py --config conf/cluster.yaml --ds D
# Settings (environment): SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8080), WORKERS (2),
# WORKER_CORES (1), WORKER_MEMORY (4g).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
export SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
DIR="${CLUSTER_DIR:-$ROOT/data/cluster}"
PORT="${SPARK_MASTER_PORT:-7077}"
UI_PORT="${SPARK_MASTER_WEBUI_PORT:-8080}"
WORKERS="${WORKERS:-2}"
MASTER_URL="spark://127.0.0.1:$PORT"

alive() {  # alive <pidfile>: the pid in it runs a Spark JVM of ours
  local f="$1" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "org.apache.spark.deploy" "/proc/$pid/cmdline" 2>/dev/null
}

wait_port() {  # wait_port <port> <seconds>
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

workers_registered() {  # number of ALIVE workers the master reports
  "$PY" - "$UI_PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=5) as r:
        print(sum(1 for w in json.load(r).get("workers", []) if w.get("state") == "ALIVE"))
except Exception:
    print(0)
EOF
}

start() {
  mkdir -p "$DIR"
  if alive "$DIR/master.pid"; then
    echo "[cluster] master already running (pid $(cat "$DIR/master.pid"))"
  else
    nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" \
      --webui-port "$UI_PORT" > "$DIR/master.log" 2>&1 < /dev/null &
    echo $! > "$DIR/master.pid"
    wait_port "$PORT" 120 || { echo "[cluster] master did not open port $PORT; see $DIR/master.log" >&2; exit 1; }
  fi
  for i in $(seq 1 "$WORKERS"); do
    if alive "$DIR/worker-$i.pid"; then continue; fi
    mkdir -p "$DIR/work-$i"
    nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 \
      --cores "${WORKER_CORES:-1}" --memory "${WORKER_MEMORY:-4g}" --webui-port 0 --work-dir "$DIR/work-$i" \
      "$MASTER_URL" > "$DIR/worker-$i.log" 2>&1 < /dev/null &
    echo $! > "$DIR/worker-$i.pid"
  done
  local deadline=$((SECONDS + 120))
  until [ "$(workers_registered)" -ge "$WORKERS" ]; do
    [ $SECONDS -lt $deadline ] || { echo "[cluster] workers did not register; see $DIR/worker-*.log" >&2; exit 1; }
    sleep 1
  done
  echo "[cluster] $MASTER_URL up: $WORKERS workers x ${WORKER_CORES:-1} core, ${WORKER_MEMORY:-4g} (UI http://127.0.0.1:$UI_PORT)"
}

stop() {
  local f pid
  for f in "$DIR"/worker-*.pid "$DIR/master.pid"; do
    [ -f "$f" ] || continue
    if alive "$f"; then
      pid="$(cat "$f")"
      kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "[cluster] stopped $(basename "$f" .pid) (pid $pid)"
    fi
    rm -f "$f"
  done
}

status() {
  local f rc=0
  for f in "$DIR/master.pid" "$DIR"/worker-*.pid; do
    [ -f "$f" ] || { echo "[cluster] not started"; return 1; }
    if alive "$f"; then echo "[cluster] $(basename "$f" .pid): pid $(cat "$f") running"
    else echo "[cluster] $(basename "$f" .pid): not running"; rc=1; fi
  done
  echo "[cluster] workers registered with the master: $(workers_registered)"
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: scripts/cluster.sh start|stop|status" >&2; exit 2 ;;
esac
