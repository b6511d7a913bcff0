#!/usr/bin/env bash
# The test command: set-up (once), then each side's tests in its own environment: the Spark side's in .venv
# (local Spark with Delta), the training side's (TRAIN_TESTS: torch, Petastorm, no PySpark) in .venv-train.
# Slow benchmark-like tests are skipped unless a marker expression is given (bash scripts/test.sh -m slow);
# other pytest arguments pass through to both sides (-k, -x, ...), and a test file, folder or node id goes to
# the side it belongs to (bash scripts/test.sh tests/test_loader.py runs only the training side). The exit
# status is non-zero when either side fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
SPARK_PY="$ROOT/.venv/bin/python"
TRAIN_PY="$ROOT/.venv-train/bin/python"
# PySpark's workers (Spark side), and the Spark side's interpreter for the training tests that cross the seam
# (tests/seam_spark.py writes their Delta tables with delta-spark).
export PYSPARK_PYTHON="$SPARK_PY" PYSPARK_DRIVER_PYTHON="$SPARK_PY" DYNAMIX_SPARK_PYTHON="$SPARK_PY"
TRAIN_TESTS=(tests/test_model.py tests/test_target_match.py tests/test_bias_field.py tests/test_row_bias.py tests/test_id_match.py tests/test_baseline.py tests/test_loader.py tests/test_train.py tests/test_experiments.py tests/test_importance.py tests/test_costs.py tests/test_experiment_claims.py
             tests/test_gpu_bench.py)

is_train_file() {
  local f; f="$(realpath -m "${1%%::*}")"
  for t in "${TRAIN_TESTS[@]}"; do [ "$f" = "$ROOT/$t" ] && return 0; done
  return 1
}

# Split the arguments: options (and their values) go to both sides, paths to their side.
opts=() spark_paths=() train_paths=() has_m=0 prev=""
for a in "$@"; do
  p="${a%%::*}"
  case "$prev" in -m|-k|-p|-o|-c|--deselect|--ignore|--basetemp|--rootdir|--junitxml) prev=""; opts+=("$a"); continue;; esac
  prev="$a"
  if [ "$a" = "-m" ]; then has_m=1; fi
  if [[ "$a" != -* ]] && [ -e "$p" ]; then
    if [ -d "$p" ]; then  # a folder: both sides, each its own files
      spark_paths+=("$a"); train_paths+=("$a")
    elif is_train_file "$a"; then train_paths+=("$a")
    else spark_paths+=("$a")
    fi
  else
    opts+=("$a")
  fi
done
if [ "$has_m" -eq 0 ]; then opts=(-m "not slow" "${opts[@]}"); fi
ignore_train=() train_only=()
for t in "${TRAIN_TESTS[@]}"; do ignore_train+=(--ignore="$t"); done
run_spark=1 run_train=1
if [ $((${#spark_paths[@]} + ${#train_paths[@]})) -eq 0 ]; then  # no path: the whole suite
  train_paths=("${TRAIN_TESTS[@]}")
else
  [ ${#spark_paths[@]} -eq 0 ] && run_spark=0
  [ ${#train_paths[@]} -eq 0 ] && run_train=0
  for p in "${train_paths[@]}"; do  # a folder given to the training side: only its training files
    if [ -d "${p%%::*}" ]; then
      for t in "${TRAIN_TESTS[@]}"; do [[ "$(realpath -m "$t")" == "$(realpath -m "$p")"/* ]] && train_only+=("$t"); done
    else train_only+=("$p"); fi
  done
  train_paths=("${train_only[@]}")
  [ ${#train_paths[@]} -eq 0 ] && run_train=0
fi

rc_spark=0 rc_train=0
if [ "$run_spark" -eq 1 ]; then
  what="${spark_paths[*]}"
  echo "== Spark side (.venv): ${what:-tests/, less the training files}" >&2
  "$SPARK_PY" -m pytest -q "${ignore_train[@]}" "${opts[@]}" "${spark_paths[@]}" || rc_spark=$?
fi
if [ "$run_train" -eq 1 ]; then
  echo "== training side (.venv-train): ${train_paths[*]}" >&2
  "$TRAIN_PY" -m pytest -q "${opts[@]}" "${train_paths[@]}" || rc_train=$?
fi
# 5 = nothing collected on that side (e.g. -k matching only the other side's tests): not a failure unless
# neither side ran anything.
if [ "$rc_spark" -eq 5 ] && { [ "$run_train" -eq 0 ] || [ "$rc_train" -ne 5 ]; }; then rc_spark=0; fi
if [ "$rc_train" -eq 5 ] && { [ "$run_spark" -eq 0 ] || [ "$rc_spark" -ne 5 ]; }; then rc_train=0; fi
s_txt="not run" t_txt="not run"
[ "$run_spark" -eq 1 ] && s_txt="exit $rc_spark"
[ "$run_train" -eq 1 ] && t_txt="exit $rc_train"
echo "== test.sh: Spark side $s_txt, training side $t_txt" >&2
if [ "$rc_spark" -ne 0 ]; then exit "$rc_spark"; fi
exit "$rc_train"
