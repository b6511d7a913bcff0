#!/usr/bin/env bash
# Side by side, one after the other, alternating: build_ebf at two commits on the same bench_ebf lake.
#   bash bench/ab_ebf_commits.sh OLD_COMMIT NEW_COMMIT [REPS] [SIZE]
# Each commit is checked out as a git worktree under /tmp/dynamix-ab/<commit> (sharing this checkout's .cache
# of jars and its .venv); results go to bench/results_ebf_ab_<commit>.json and the sort floor to
# bench/results_ebf_ab_floor.json. Example (issue 14, 2026-12-03): bash bench/ab_ebf_commits.sh 8823229^ 8823229 2
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OLD="$1"; NEW="$2"; REPS="${3:-2}"; SIZE="${4:-1000000}"
PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
tree() {  # tree COMMIT -> a worktree path
  local sha; sha="$(git -C "$ROOT" rev-parse --short "$1")"
  local d="/tmp/dynamix-ab/$sha"
  [[ -d "$d" ]] || { git -C "$ROOT" worktree add -f --detach "$d" "$sha" -q; ln -s "$ROOT/.cache" "$d/.cache"; }
  echo "$d"
}
run() {  # run WORKTREE OUT METHODS...
  local d="$1" out="$2"; shift 2
  (cd "$d" && PYTHONPATH="$d" "$PY" bench/bench_ebf.py --sizes "$SIZE" --methods "$@" --out "$out")
}
O="$(tree "$OLD")"; N="$(tree "$NEW")"
run "$N" "$ROOT/bench/results_ebf_ab_floor.json" sort_floor
for _ in $(seq "$REPS"); do
  run "$N" "$ROOT/bench/results_ebf_ab_$(basename "$N").json" dynamix dynamix_all_policies
  run "$O" "$ROOT/bench/results_ebf_ab_$(basename "$O").json" dynamix dynamix_all_policies
done
run "$N" "$ROOT/bench/results_ebf_ab_floor.json" sort_floor
