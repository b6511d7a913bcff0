"""Gates' share A/B in one process: a job run on one day alternately with a StagedWrite setting on and off.

    .venv/bin/python bench/gate_ab.py --config CONF --job denoise --ds 2026-11-02 --pairs 3 [--out FILE.json]

The lake of ``CONF`` must hold what the job reads (run the nightly for the day before and the day once first).
Each repetition runs ``jobs/<job>.py``'s ``run`` in this process (one Spark session and one GX context for all,
so per-process start-up costs land in the first run, which is discarded: ``--warmup``, default 1), once with
``StagedWrite(checkpoint=True)`` and once with ``checkpoint=False``, alternating so that both see the same host
load; each run replaces the day's partitions as the nightly would. Per run: the job's wall seconds, the sum of
its gates' seconds (each gate's ``GateResult.elapsed_s``, as recorded in ``quality_results.gate_seconds``) and
the share; then per side the median, and the ratios checkpoint/persist.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--job", required=True, choices=["denoise", "user_window_stats", "build_ebf"])
    ap.add_argument("--ds", required=True)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    import importlib

    import dynamix_spark.staged_write as staged_write
    from dynamix_spark.config import load_config
    from dynamix_spark.session import build_spark

    cfg = load_config(args.config)
    spark = build_spark(f"gate-ab-{args.job}", cfg.spark.conf)
    job = importlib.import_module(f"jobs.{args.job}")
    side = {"checkpoint": True}
    gates: list[float] = []
    init, gate = staged_write.StagedWrite.__init__, staged_write.gate

    def forced_init(self, *a, **k):
        k["checkpoint"] = side["checkpoint"]
        init(self, *a, **k)

    def timed_gate(*a, **k):
        r = gate(*a, **k)
        gates.append(r.elapsed_s)
        return r

    staged_write.StagedWrite.__init__, staged_write.gate = forced_init, timed_gate
    runs = []
    order = [True, False] * args.pairs
    for i, checkpoint in enumerate([True] * args.warmup + order):
        side["checkpoint"] = checkpoint
        gates.clear()
        t0 = time.perf_counter()
        job.run(spark, cfg, args.ds)
        wall = time.perf_counter() - t0
        row = {"checkpoint": checkpoint, "wall_s": round(wall, 2), "gates_s": round(sum(gates), 2),
               "share": round(sum(gates) / wall, 3), "warmup": i < args.warmup}
        print(json.dumps(row), flush=True)
        runs.append(row)
    measured = [r for r in runs if not r["warmup"]]
    summary = {}
    for name, on in (("checkpoint", True), ("persist", False)):
        rs = [r for r in measured if r["checkpoint"] == on]
        summary[name] = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "gates_s", "share")}
    summary["ratio_checkpoint_over_persist"] = {
        k: round(summary["checkpoint"][k] / summary["persist"][k], 3) for k in ("wall_s", "gates_s")}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"job": args.job, "ds": args.ds, "config": args.config, "runs": runs,
                                              "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
