"""Where build_ebf's time goes on a bench_ebf lake: the job run in-process with timers around the gate's parts
(GX validation, failed-row examples, audit, docs) and the publish (Delta write), and the number of Spark jobs
each part ran (``jobs``: a job group per part; counts do not move with the host's load, seconds do).
PROF_CONF="k=v;k2=v2" sets runtime SQL settings first.

    .venv/bin/python bench/profile_ebf_job.py /tmp/dynamix-bench/ebf/n1000000 baseline,remove_passive,remove_active,boost_all,boost_active
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_ebf import DAYS, SPARK_CONF, bench_cfg  # noqa: E402


def main(lake: Path, policies: list[str]) -> dict:
    import dynamix_spark.quality as quality
    import dynamix_spark.staged_write as staged_write
    import jobs.build_ebf as job
    from dynamix_spark.session import build_spark

    times: dict[str, float] = {}
    jobs: dict[str, int] = {}
    groups: list[str] = ["other"]
    sc = None

    def timed(mod, name):
        fn = getattr(mod, name)

        def wrapper(*a, **k):
            group = f"{name}-{len(groups)}"
            groups.append(group)
            sc.setJobGroup(group, group)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t0
                jobs[name] = jobs.get(name, 0) + len(sc.statusTracker().getJobIdsForGroup(group))
                groups.pop()
                sc.setJobGroup(groups[-1], groups[-1])
        setattr(mod, name, wrapper)

    for name in ("_validate", "_with_examples", "_audit", "_render_docs", "_write_gate_summary"):
        timed(quality, name)  # as gate (dynamix_spark/quality/__init__.py) calls them
    timed(quality.gx, "_validate")  # as _with_examples calls it (the failed expectations, for examples)
    for name in ("gate", "publish_or_fail", "record_results"):  # as the job's staged write calls them
        timed(staged_write, name)
    cfg = bench_cfg(lake, policies)
    spark = build_spark("bench-ebf-profile", SPARK_CONF, master="local[2]")
    spark.range(1).count()
    sc = spark.sparkContext
    sc.setJobGroup("other", "other")
    for kv in filter(None, os.environ.get("PROF_CONF", "").split(";")):
        spark.conf.set(*kv.split("=", 1))
    t0 = time.perf_counter()
    job.run(spark, cfg, DAYS[1])
    times["total"] = time.perf_counter() - t0
    jobs["other"] = len(sc.statusTracker().getJobIdsForGroup("other"))  # inputs, counts, summary, cache fill
    return {"seconds": {k: round(v, 1) for k, v in times.items()}, "jobs": jobs}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2].split(","))))
