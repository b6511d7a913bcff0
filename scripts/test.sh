#!/usr/bin/env bash
# The test command: set-up (once), then the suite on local Spark; slow benchmark-like tests are skipped
# unless asked for (bash scripts/test.sh -m slow); other pytest arguments pass through (a file, -k ...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
export PYSPARK_PYTHON="$ROOT/.venv/bin/python" PYSPARK_DRIVER_PYTHON="$ROOT/.venv/bin/python"
# Slow tests are skipped unless a marker expression is given (-m slow, -m "slow or not slow").
has_m=0
for a in "$@"; do [ "$a" = "-m" ] && has_m=1; done
if [ "$has_m" -eq 0 ]; then set -- -m "not slow" "$@"; fi
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
