"""The write floor of build_ebf's policies: on a bench_ebf lake, build and cache the examples once, then write
the staged rows of 1 policy and of the given policies to the ``noop`` sink, to partitioned Parquet and to
partitioned Delta, each timed (one process, local[2], the bench's Spark settings).

    .venv/bin/python bench/bench_ebf.py --sizes 1000000 --methods build        # makes the lake once
    .venv/bin/python bench/ebf_write_floor.py /tmp/dynamix-bench/ebf/n1000000 baseline,remove_passive,remove_active,boost_all,boost_active
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_ebf import DAYS, DATA, SPARK_CONF, bench_cfg  # noqa: E402


def main(lake: Path, policies: list[str]) -> dict:
    from pyspark import StorageLevel

    from dynamix_spark.ebf import build_examples
    from dynamix_spark.session import build_spark
    from jobs.build_ebf import read_inputs, stage_policies

    cfg = bench_cfg(lake, policies)
    spark = build_spark("bench-ebf-write-floor", SPARK_CONF, master="local[2]")
    times: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        fn()
        times[name] = round(time.perf_counter() - t0, 1)

    inp = read_inputs(spark, cfg, DAYS[1])
    ex = build_examples(inp["queries"], inp["events"], inp["segments"], inp["conversions"], cfg.stats, cfg.ebf,
                        cfg.segmentation.null_corr_segment).persist(StorageLevel.MEMORY_AND_DISK)
    timed("build+cache(count)", ex.count)
    out = DATA.parent / "write-floor"
    for ps in (policies[:1], policies):
        staged = stage_policies(ex, ps, cfg.ebf, DAYS[1])
        k = len(ps)
        timed(f"noop x{k}", lambda: staged.write.format("noop").mode("overwrite").save())
        for fmt in ("parquet", "delta"):
            d = out / f"{fmt}{k}"
            shutil.rmtree(d, ignore_errors=True)
            timed(f"{fmt} partitioned x{k}",
                  lambda: staged.write.format(fmt).partitionBy("ds", "policy", "segment").save(str(d)))
    return times


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2].split(","))))
