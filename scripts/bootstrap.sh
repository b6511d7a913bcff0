#!/usr/bin/env bash
# One-time set-up, idempotent: a virtual environment with the pinned packages and the pinned Delta jars
# resolved from Maven Central into .cache/jars. A stamp makes a second run a no-op that takes a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.dynamix-stamp"
want_stamp="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"

log() { echo "[bootstrap] $*" >&2; }

if ! command -v java >/dev/null 2>&1; then
  log "no java on PATH: installing OpenJDK 17 (Spark needs a JVM)"
  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless) >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then
    for cand in python3.11 python3.12 python3; do
      if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
    done
  fi
  log "creating virtual environment with $PY"
  "$PY" -m venv "$VENV"
fi

if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want_stamp" ]; then
  log "installing pinned packages (requirements.lock); this takes a few minutes once"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r requirements.lock >&2
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >&2
  echo "$want_stamp" > "$STAMP"
fi

want_coord="$("$VENV/bin/python" scripts/fetch_delta_jars.py --print-coordinate)"
if [ "$(cat .cache/jars/COORDINATE 2>/dev/null || true)" != "$want_coord" ]; then
  log "resolving $want_coord from Maven Central into .cache/jars (once)"
  "$VENV/bin/python" scripts/fetch_delta_jars.py >&2
fi
