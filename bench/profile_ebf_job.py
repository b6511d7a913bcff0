"""Where build_ebf's time goes on a bench_ebf lake: the job run in-process with timers around the gate's parts
(GX validation, failed-row examples, audit, docs) and the publish (Delta write). PROF_CONF="k=v;k2=v2" sets
runtime SQL settings first.

    .venv/bin/python bench/profile_ebf_job.py /tmp/dynamix-bench/ebf/n1000000 baseline,remove_passive,remove_active,boost_all,boost_active
"""
import json, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import dynamix_spark.quality as q
import jobs.build_ebf as j
from dynamix_spark.config import load_config
from dynamix_spark.session import build_spark
T = {}
def timed(mod, name):
    fn = getattr(mod, name)
    def w(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            T[name] = T.get(name, 0) + time.perf_counter() - t0
    setattr(mod, name, w)
for n in ("_validate", "_with_examples", "_audit", "_render_docs", "_write_gate_summary"):
    timed(q, n)
timed(j, "gate"); timed(j, "publish_or_fail"); timed(j, "record_results")
lake, pols = Path(sys.argv[1]), sys.argv[2].split(",")
cfg = load_config(str(ROOT / "conf" / "local.yaml"), [f"paths.lake_root={lake}", "ebf.lookback_days=1",
                  f"ebf.build_policies={json.dumps(pols)}", "spark.conf={}"])
from bench_ebf import SPARK_CONF, DAYS
spark = build_spark("prof", SPARK_CONF, master="local[2]")
spark.range(1).count()
import os
for kv in os.environ.get("PROF_CONF", "").split(";"):
    if kv: spark.conf.set(*kv.split("=", 1))
t0 = time.perf_counter()
j.run(spark, cfg, DAYS[1])
T["total"] = time.perf_counter() - t0
print(json.dumps({k: round(v, 1) for k, v in T.items()}))
