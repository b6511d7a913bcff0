"""The quality gates' share of each job's wall time, from what the jobs record (issue 17, "Gates that cost little").

    .venv-train/bin/python bench/gate_share.py [--lake data/lake]
    .venv-train/bin/python bench/gate_share.py --lake before=/tmp/gs/lake --lake after=/tmp/gs/lake_after

Read JVM-free from the lake's ``run_metrics`` (``training/delta_snapshot`` and pyarrow): for each succeeded run
of denoise, user_window_stats and build_ebf, the job's wall time (its rows' earliest ``started_at`` to latest
``ended_at``) and ``params.gate_seconds`` + ``params.docs_seconds`` (the sum of its gates' wall seconds, and the
run's one Data Docs build where the job renders them at its commit; each gate's Great Expectations
validation and audit checks, recorded by ``dynamix_spark/staged_write.py``); then the share per job, and the
target: at most 25% of each job's time. Runs recorded before gate seconds existed are skipped. Several
``--lake NAME=PATH`` (e.g. the same days run by the code before and after a change) are listed side by side, one
block of rows per lake, the lake's name in the first column.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.delta_snapshot import live_files  # noqa: E402

JOBS = ("denoise", "user_window_stats", "build_ebf")


def runs(lake: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for f in live_files(f"{lake}/run_metrics"):
        t = pq.read_table(f.path, columns=["run_id", "job", "ds", "started_at", "ended_at", "status", "params"])
        for r in t.to_pylist():
            r["ds"] = r["ds"] or f.partition_values.get("ds")
            rows.append(r)
    by_run: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["job"] in JOBS and r["status"] == "succeeded":
            by_run[r["run_id"]].append(r)
    out = []
    for run_id, rs in by_run.items():
        params = json.loads(rs[0]["params"] or "{}")
        if params.get("gate_seconds") is None:
            continue
        wall = (max(r["ended_at"] for r in rs) - min(r["started_at"] for r in rs)).total_seconds()
        out.append({"run_id": run_id, "job": rs[0]["job"], "ds": rs[0]["ds"], "wall_s": wall,
                    # The run's one Data Docs build (staged write, since issue 17's last change) is gate cost too.
                    "gate_s": float(params["gate_seconds"]) + float(params.get("docs_seconds") or 0.0)})
    return sorted(out, key=lambda r: (JOBS.index(r["job"]), r["ds"], r["run_id"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", action="append", metavar="[NAME=]PATH",
                   help=f"a lake (repeatable; default {ROOT / 'data' / 'lake'})")
    args = p.parse_args(argv)
    lakes = [(x.split("=", 1) if "=" in x else ("", x)) for x in (args.lake or [str(ROOT / "data" / "lake")])]
    print("| lake | job | ds | job wall s | gates s | gates share | <= 25%? |\n|---|---|---|---|---|---|---|")
    status = 0
    for name, lake in lakes:
        rs = runs(lake)
        if not rs:
            print(f"no succeeded runs with gate seconds in {lake}/run_metrics", file=sys.stderr)
            status = 1
            continue
        for r in rs:
            share = r["gate_s"] / r["wall_s"] if r["wall_s"] > 0 else float("nan")
            print(f"| {name} | {r['job']} | {r['ds']} | {r['wall_s']:.1f} | {r['gate_s']:.1f} | {share:.0%} | "
                  f"{'yes' if share <= 0.25 else 'no'} |")
        for job in JOBS:
            js = [r for r in rs if r["job"] == job]
            if js:
                w, g = sum(r["wall_s"] for r in js), sum(r["gate_s"] for r in js)
                print(f"| {name} | **{job}, all runs** | | {w:.1f} | {g:.1f} | {g / w:.0%} | "
                      f"{'yes' if g <= 0.25 * w else 'no'} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
