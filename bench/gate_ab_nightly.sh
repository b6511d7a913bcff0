#!/usr/bin/env bash
# The quality gates' share before and after a change, on the same raw days: one nightly per side, one after the
# other (run it on a quiet machine), each in its own lake; then bench/gate_share.py prints both side by side.
#
#   bash bench/gate_ab_nightly.sh BEFORE_REV [RAW_ROOT] [OUT]     # e.g. 45764f6 data/raw /tmp/dynamix-gate-ab
#
# before = a git worktree of BEFORE_REV, after = this checkout as it is. Each side's conf extends its own
# conf/local.yaml with the lake, Data Docs and warehouse under OUT/<side>/, the catalog in memory and maintenance
# off (gate_share reads only denoise, user_window_stats and build_ebf). Days: the generator's (conf/local.yaml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BEFORE_REV="${1:?usage: gate_ab_nightly.sh BEFORE_REV [RAW_ROOT] [OUT]}"
RAW="$(cd "${2:-$ROOT/data/raw}" && pwd)"
OUT="${3:-/tmp/dynamix-gate-ab}"
PY="$ROOT/.venv/bin/python"
export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
mkdir -p "$OUT"
if [ ! -d "$OUT/before-tree" ]; then
  git -C "$ROOT" worktree add --detach "$OUT/before-tree" "$BEFORE_REV"
  ln -s "$ROOT/.cache" "$OUT/before-tree/.cache"
fi
START="$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from dynamix_spark.config import load_config; print(load_config(sys.argv[1] + "/conf/local.yaml").generator.start_date)' "$ROOT")"
END="$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from dynamix_spark.config import load_config; from schemas.dates import add_days; g = load_config(sys.argv[1] + "/conf/local.yaml").generator; print(add_days(g.start_date, g.days - 1))' "$ROOT")"
for side in before after; do
  tree="$ROOT"; [ "$side" = before ] && tree="$OUT/before-tree"
  d="$OUT/$side"
  rm -rf "$d"; mkdir -p "$d"
  cat > "$d/conf.yaml" <<EOF
extends: $tree/conf/local.yaml
paths:
  raw_root: $RAW
  truth_root: $d/truth
  lake_root: $d/lake
spark:
  conf:
    spark.sql.catalogImplementation: in-memory
    spark.sql.warehouse.dir: $d/warehouse
    spark.eventLog.enabled: "false"
quality:
  docs_dir: $d/docs
maintenance:
  register_catalog: false
  optimize: false
  vacuum: false
EOF
  t0=$(date +%s)
  (cd "$tree" && PYTHONPATH="$tree" "$PY" jobs/nightly.py --config "$d/conf.yaml" --ds "$START" --until "$END" \
      --report "$d/report.json") > "$d/nightly.log" 2>&1
  echo "$side: nightly $START..$END in $(( $(date +%s) - t0 )) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
"$ROOT/.venv-train/bin/python" "$ROOT/bench/gate_share.py" --lake "before=$OUT/before/lake" --lake "after=$OUT/after/lake"
