"""The write floor of build_ebf's policies: on a bench_ebf lake, build and cache the examples once, then write
the staged rows of 1 policy and of the given policies to the ``noop`` sink, to partitioned Parquet and to
partitioned Delta, each timed (one process, local[2], the bench's Spark settings).

    .venv/bin/python bench/bench_ebf.py --sizes 1000000 --methods build        # makes the lake once
    .venv/bin/python bench/ebf_write_floor.py /tmp/dynamix-bench/ebf/n1000000 baseline,remove_passive,remove_active,boost_all,boost_active
"""
import json, sys, time, shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from pyspark import StorageLevel
from pyspark.sql import functions as F
import jobs.build_ebf as j
from dynamix_spark.config import load_config
from dynamix_spark.session import build_spark
from dynamix_spark.ebf import apply_policy, build_examples
from dynamix_spark.delta_io import conform
from schemas.ebf import EBF_EXAMPLES
from bench_ebf import SPARK_CONF, DAYS
lake = Path(sys.argv[1]); pols = sys.argv[2].split(",")
cfg = load_config(str(ROOT / "conf" / "local.yaml"), [f"paths.lake_root={lake}", "ebf.lookback_days=1",
                  f"ebf.build_policies={json.dumps(pols)}", "spark.conf={}"])
spark = build_spark("prof", SPARK_CONF, master="local[2]")
T = {}
def t(name, fn):
    t0 = time.perf_counter(); fn(); T[name] = round(time.perf_counter() - t0, 1)
inp = j.read_inputs(spark, cfg, DAYS[1])
ex = build_examples(inp["queries"], inp["events"], inp["segments"], inp["conversions"], cfg.stats, cfg.ebf,
                    cfg.segmentation.null_corr_segment).persist(StorageLevel.MEMORY_AND_DISK)
t("build+cache(count)", lambda: ex.count())
def staged(ps):
    out = None
    for p in ps:
        part = apply_policy(ex, p, cfg.ebf).withColumn("ds", F.lit(DAYS[1]))
        out = part if out is None else out.unionByName(part)
    return conform(out, EBF_EXAMPLES)
for label, ps in (("1", pols[:1]), ("5", pols)):
    s = staged(ps)
    t(f"noop x{label}", lambda: s.write.format("noop").mode("overwrite").save())
    d = f"/tmp/dynamix-bench/write-floor/pq{label}"; shutil.rmtree(d, ignore_errors=True)
    t(f"parquet partitioned x{label}", lambda: s.write.partitionBy("ds", "policy", "segment").parquet(d))
    d2 = f"/tmp/dynamix-bench/write-floor/dl{label}"; shutil.rmtree(d2, ignore_errors=True)
    t(f"delta partitioned x{label}", lambda: s.write.format("delta").partitionBy("ds", "policy", "segment").save(d2))
print(json.dumps(T))
