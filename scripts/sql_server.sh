#!/usr/bin/env bash
# SQL for analysts while the nightly runs: the local catalog behind a server that many clients use at once.
#   bash scripts/sql_server.sh start|stop|status [--profile conf/local_shared.yaml]
#   .venv/lib/python3.11/site-packages/pyspark/bin/beeline -u jdbc:hive2://127.0.0.1:10000/ -e "SELECT ..."
# Two processes, both from the pyspark wheel in .venv (plus Derby's network server jar, .cache/derby):
# 1. Derby's network server (org.apache.derby.drda.NetworkServerControl) on the host and port of the profile's
#    javax.jdo.option.ConnectionURL (jdbc:derby://127.0.0.1:1527/data/metastore_db), derby.system.home the
#    repository root: it holds the metastore database and serves it to every JVM that uses the profile (the
#    nightly jobs, the Thrift server, spark-sql shells), where embedded Derby admits one JVM at a time.
# 2. Spark's Thrift JDBC/ODBC server (org.apache.spark.sql.hive.thriftserver.HiveThriftServer2, one Spark
#    application, local master) with the Delta jars and the profile's catalog settings, on 127.0.0.1:THRIFT_PORT:
#    beeline and any HiveServer2 JDBC/ODBC client query dynamix.<table> through it, many sessions at once.
# Logs and pid files under data/sql_server/ (SQL_SERVER_DIR); `stop` stops exactly the pids `start` recorded
# (checked to still be those JVMs); `status` exits 0 only when both run and answer on their ports.
# Settings (environment): THRIFT_PORT (10000), THRIFT_MASTER (local[2]), THRIFT_DRIVER_MEMORY (2g),
# THRIFT_UI_PORT (unset: no Spark UI), START_TIMEOUT_S (300). docs/OPERATIONS.md section 3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"  # the profile's relative paths (data/warehouse, .cache/derby, the database name) are from here
PY="$ROOT/.venv/bin/python"

usage() { echo "usage: scripts/sql_server.sh start|stop|status [--profile conf/<profile>.yaml]" >&2; exit 2; }
cmd="${1:-}"; shift || true
case "$cmd" in start|stop|status) ;; *) usage ;; esac
PROFILE="conf/local_shared.yaml"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || usage; PROFILE="$2"; shift 2 ;;
    *) usage ;;
  esac
done

DIR="${SQL_SERVER_DIR:-$ROOT/data/sql_server}"
THRIFT_PORT="${THRIFT_PORT:-10000}"
DERBY_JARS="$ROOT/.cache/derby"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
export SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"

# The Derby server's host and port: those of the profile's ConnectionURL, so server and clients cannot disagree.
read -r DERBY_HOST DERBY_PORT < <("$PY" - "$PROFILE" <<'EOF'
import re, sys
from dynamix_spark.config import ConfigError, load_config
try:
    url = load_config(sys.argv[1]).spark.conf.get("spark.hadoop.javax.jdo.option.ConnectionURL", "")
except (ConfigError, OSError) as e:
    sys.exit(f"[sql_server] {sys.argv[1]}: {e}")
m = re.match(r"jdbc:derby://([^:/]+):(\d+)/", url)
if not m:
    sys.exit(f"[sql_server] {sys.argv[1]}: javax.jdo.option.ConnectionURL {url!r} is not a Derby network URL "
             "(jdbc:derby://host:port/database); use conf/local_shared.yaml or a profile that extends it")
print(m.group(1), m.group(2))
EOF
) || exit 2
[ -n "${DERBY_PORT:-}" ] || exit 2

alive() {  # alive <pidfile> <main class>: the pid in it runs that JVM
  local f="$1" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # wait_port <host> <port> <pidfile> <seconds>: the port opens while the process lives
  local deadline=$((SECONDS + $4))
  until port_open "$1" "$2"; do
    kill -0 "$(cat "$3")" 2>/dev/null || return 1  # (its cmdline is nohup's until it has exec'd the JVM)
    [ $SECONDS -lt $deadline ] || return 1
    sleep 1
  done
}

DERBY_CLASS=org.apache.derby.drda.NetworkServerControl
THRIFT_CLASS=org.apache.spark.sql.hive.thriftserver.HiveThriftServer2

derby_cp() {  # the wheel's Derby engine and tools, and the network server resolved at the same version
  local cp="$DERBY_JARS/derbynet.jar" j
  for j in "$SPARK_HOME"/jars/derby-*.jar "$SPARK_HOME"/jars/derbyshared-*.jar "$SPARK_HOME"/jars/derbytools-*.jar; do
    cp="$cp:$j"
  done
  echo "$cp"
}

start() {
  if [ ! -f "$DERBY_JARS/derbynet.jar" ] || [ ! -f "$DERBY_JARS/derbyclient.jar" ]; then
    echo "[sql_server] $DERBY_JARS/derbynet.jar or derbyclient.jar missing: run bash scripts/bootstrap.sh" >&2; exit 1
  fi
  mkdir -p "$DIR"
  local t0=$SECONDS
  if alive "$DIR/derby.pid" "$DERBY_CLASS"; then
    echo "[sql_server] Derby network server already running (pid $(cat "$DIR/derby.pid"))"
  else
    if port_open "$DERBY_HOST" "$DERBY_PORT"; then
      echo "[sql_server] $DERBY_HOST:$DERBY_PORT is taken by another process" >&2; exit 1
    fi
    # -noSecurityManager: Derby would otherwise install a Java security manager (deprecated since Java 17).
    nohup "$JAVA" -Xmx512m -Dderby.system.home="$ROOT" -Dderby.stream.error.file="$DIR/derby.log" \
      -cp "$(derby_cp)" "$DERBY_CLASS" start -h "$DERBY_HOST" -p "$DERBY_PORT" -noSecurityManager \
      > "$DIR/derby.out" 2>&1 < /dev/null &
    echo $! > "$DIR/derby.pid"
    wait_port "$DERBY_HOST" "$DERBY_PORT" "$DIR/derby.pid" 60 \
      || { echo "[sql_server] Derby did not open $DERBY_HOST:$DERBY_PORT; see $DIR/derby.out" >&2; tail -20 "$DIR/derby.out" >&2; exit 1; }
  fi
  if alive "$DIR/thrift.pid" "$THRIFT_CLASS"; then
    echo "[sql_server] Thrift server already running (pid $(cat "$DIR/thrift.pid"))"
  else
    if port_open 127.0.0.1 "$THRIFT_PORT"; then
      echo "[sql_server] 127.0.0.1:$THRIFT_PORT is taken by another process" >&2; exit 1
    fi
    local args ui=(--conf spark.ui.enabled=false)
    args="$("$PY" -m dynamix_spark.session --spark-submit-args --catalog-of "$PROFILE")"
    mapfile -t SPARK_ARGS <<< "$args"
    [ -n "${THRIFT_UI_PORT:-}" ] && ui=(--conf spark.ui.port="$THRIFT_UI_PORT")
    # spark-submit execs spark-class, which execs the JVM: $! ends up being the server's JVM.
    nohup "$SPARK_HOME/bin/spark-submit" --class "$THRIFT_CLASS" --name dynamix-sql-server \
      --master "${THRIFT_MASTER:-local[2]}" --driver-memory "${THRIFT_DRIVER_MEMORY:-2g}" "${SPARK_ARGS[@]}" \
      "${ui[@]}" --conf spark.sql.hive.thriftServer.singleSession=false \
      --hiveconf hive.server2.thrift.bind.host=127.0.0.1 --hiveconf hive.server2.thrift.port="$THRIFT_PORT" \
      spark-internal > "$DIR/thrift.log" 2>&1 < /dev/null &
    echo $! > "$DIR/thrift.pid"
    wait_port 127.0.0.1 "$THRIFT_PORT" "$DIR/thrift.pid" "${START_TIMEOUT_S:-300}" \
      || { echo "[sql_server] the Thrift server did not open 127.0.0.1:$THRIFT_PORT; see $DIR/thrift.log" >&2
           grep -E "ERROR|Exception" "$DIR/thrift.log" | head -5 >&2; exit 1; }
  fi
  echo "[sql_server] up in $((SECONDS - t0)) s: jdbc:hive2://127.0.0.1:$THRIFT_PORT/ (Thrift, pid $(cat "$DIR/thrift.pid")), metastore jdbc:derby://$DERBY_HOST:$DERBY_PORT (pid $(cat "$DIR/derby.pid")); logs in $DIR"
}

stop_pid() {  # stop_pid <pidfile> <class> <name>: SIGTERM, 30 s grace, then SIGKILL
  local f="$1" pid
  [ -f "$f" ] || return 0
  if alive "$f" "$2"; then
    pid="$(cat "$f")"
    kill "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "[sql_server] stopped $3 (pid $pid)"
  fi
  rm -f "$f"
}

stop() {
  # The Thrift server first (it is the Derby server's client), then Derby: its own shutdown command closes the
  # database cleanly; SIGTERM if that does not answer.
  stop_pid "$DIR/thrift.pid" "$THRIFT_CLASS" "Thrift server"
  if alive "$DIR/derby.pid" "$DERBY_CLASS"; then
    "$JAVA" -cp "$(derby_cp)" "$DERBY_CLASS" shutdown -h "$DERBY_HOST" -p "$DERBY_PORT" >/dev/null 2>&1 || true
  fi
  stop_pid "$DIR/derby.pid" "$DERBY_CLASS" "Derby network server"
}

status() {
  local rc=0
  if alive "$DIR/derby.pid" "$DERBY_CLASS" && port_open "$DERBY_HOST" "$DERBY_PORT"; then
    echo "[sql_server] Derby network server: pid $(cat "$DIR/derby.pid"), jdbc:derby://$DERBY_HOST:$DERBY_PORT"
  else echo "[sql_server] Derby network server: not running"; rc=1; fi
  if alive "$DIR/thrift.pid" "$THRIFT_CLASS" && port_open 127.0.0.1 "$THRIFT_PORT"; then
    echo "[sql_server] Thrift server: pid $(cat "$DIR/thrift.pid"), jdbc:hive2://127.0.0.1:$THRIFT_PORT/"
  else echo "[sql_server] Thrift server: not running"; rc=1; fi
  return $rc
}

"$cmd"
