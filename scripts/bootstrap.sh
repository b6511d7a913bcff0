#!/usr/bin/env bash
# One-time set-up, idempotent: the two sides of the deployment in their own virtual environments, each with
# its pinned packages, and the pinned Delta jars (and Derby's network server jars) resolved from Maven Central
# into .cache/jars (.cache/derby):
#   .venv        the Spark side (requirements.lock): PySpark, delta-spark, GX, pyarrow >= 18, numpy 2
#   .venv-train  the training side (requirements-train.lock): torch, Petastorm, pyarrow 14, numpy 1.x, no PySpark
#   .venv-airflow the scheduler (requirements-airflow.lock)
# The project is installed editable (--no-deps) in .venv and .venv-train. Stamps per environment make a second
# run a no-op that takes a second: when its lock file changes, an environment is rebuilt from scratch (venv
# --clear), so it holds exactly what the lock file says; when only pyproject.toml changes, the editable
# install is redone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "[bootstrap] $*" >&2; }

pick_python() {  # $1: an explicit interpreter (may be empty)
  if [ -n "${1:-}" ]; then echo "$1"; return; fi
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1; then echo "$cand"; return; fi
  done
  echo "python3"
}

# fresh_venv DIR: a new (or emptied) virtual environment with a current pip.
fresh_venv() {
  local py; py="$(pick_python "${PYTHON:-}")"
  log "creating virtual environment $1 with $py"
  "$py" -m venv --clear "$1"
  "$1/bin/python" -m pip install -q --upgrade pip >&2
}

if ! command -v java >/dev/null 2>&1; then
  log "no java on PATH: installing OpenJDK 17 (Spark needs a JVM)"
  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless) >&2
fi

# setup_env DIR LOCK PIP_ARGS...: DIR holds exactly LOCK's packages (installed with PIP_ARGS) and this project
# (editable, --no-deps). Stamps: DIR/.dynamix-stamp (LOCK's hash), DIR/.dynamix-project (pyproject.toml's).
setup_env() {
  local dir="$1" lock="$2"; shift 2
  local want_lock want_proj
  want_lock="$(sha256sum "$lock" | cut -d' ' -f1)"
  want_proj="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.dynamix-stamp" 2>/dev/null || true)" != "$want_lock" ]; then
    fresh_venv "$dir"
    log "installing $lock into $(basename "$dir"); a few minutes once"
    "$dir/bin/python" -m pip install -q "$@" -r "$lock" >&2
    rm -f "$dir/.dynamix-project"
    echo "$want_lock" > "$dir/.dynamix-stamp"
  fi
  if [ "$(cat "$dir/.dynamix-project" 2>/dev/null || true)" != "$want_proj" ]; then
    "$dir/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >&2
    echo "$want_proj" > "$dir/.dynamix-project"
  fi
}

# ---- the Spark side: .venv (top-level pins, pip resolves the rest)
VENV="$ROOT/.venv"
setup_env "$VENV" requirements.lock

want_coord="$("$VENV/bin/python" scripts/fetch_delta_jars.py --print-coordinate)"
if [ "$(cat .cache/jars/COORDINATE 2>/dev/null || true)" != "$want_coord" ]; then
  log "resolving $want_coord from Maven Central into .cache/jars (once)"
  "$VENV/bin/python" scripts/fetch_delta_jars.py >&2
fi
# Derby's network server and client at the wheel's Derby version, for the shared local catalog
# (scripts/sql_server.sh, conf/local_shared.yaml); the engine itself is the wheel's.
want_derby="$("$VENV/bin/python" scripts/fetch_derby_jars.py --print-coordinate)"
if [ "$(cat .cache/derby/COORDINATE 2>/dev/null || true)" != "$want_derby" ]; then
  log "resolving $want_derby from Maven Central into .cache/derby (once)"
  "$VENV/bin/python" scripts/fetch_derby_jars.py >&2
fi

# ---- the training side: .venv-train. requirements-train.lock is a full freeze installed with --no-deps:
# Petastorm declares a dependency on pyspark (which it needs only to write datasets, never to read them), and
# this environment must not have one, so pip resolves nothing here and the file is the whole environment.
TVENV="$ROOT/.venv-train"
setup_env "$TVENV" requirements-train.lock --no-deps
if ! "$TVENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pyspark") is not None)'; then
  rm -f "$TVENV/.dynamix-stamp"
  log "ERROR: pyspark ended up in .venv-train; requirements-train.lock must not list it"; exit 1
fi

# Airflow, for the DAG in dags/ and its test, in its own environment: its pins (SQLAlchemy, pendulum, ...)
# are not ours, and nothing of the project is installed there (the DAG only shells out to the two sides).
# requirements-airflow.lock is a full freeze, so pip resolves nothing. Time-bounded; a failure here does
# not stop the set-up of the other environments: tests/test_airflow_dag.py then fails and says why.
# DYNAMIX_SKIP_AIRFLOW=1 skips it (that test then skips).
AF_VENV="$ROOT/.venv-airflow"
AF_STAMP="$AF_VENV/.dynamix-stamp"
af_want="$(sha256sum requirements-airflow.lock | cut -d' ' -f1)"
if [ "${DYNAMIX_SKIP_AIRFLOW:-0}" != "1" ] && [ "$(cat "$AF_STAMP" 2>/dev/null || true)" != "$af_want" ]; then
  AF_PY="$(pick_python "${AIRFLOW_PYTHON:-}")"
  log "installing Airflow into .venv-airflow (requirements-airflow.lock); a few minutes once"
  t0=$SECONDS
  if { [ -x "$AF_VENV/bin/python" ] || "$AF_PY" -m venv "$AF_VENV"; } \
     && timeout 1200 "$AF_VENV/bin/python" -m pip install -q --default-timeout=60 --retries 3 -r requirements-airflow.lock >&2; then
    echo "$af_want" > "$AF_STAMP"
    log "Airflow installed in $((SECONDS - t0)) s"
  else
    log "WARNING: Airflow install failed after $((SECONDS - t0)) s; the DAG test will fail until it succeeds"
  fi
fi
