"""Parquet writer settings on build_ebf's staged rows: on a bench_ebf lake, build and cache the examples once,
then write the staged rows of the first policy (and of all the given policies) as partitioned Parquet under
each setting, in one process (local[2], the bench's Spark settings); one JSON line per write (seconds, MB).

    .venv/bin/python bench/ebf_write_settings.py /tmp/dynamix-bench/ebf/n1000000 baseline default,nodict,lz4raw,none,nodict_none
    .venv/bin/python bench/ebf_write_settings.py /tmp/dynamix-bench/ebf/n1000000 baseline default,concurrent,default,concurrent
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_ebf import DATA, DAYS, SPARK_CONF, bench_cfg  # noqa: E402

SETTINGS = {
    "default": {},
    "nodict": {"parquet.enable.dictionary": "false"},
    "lz4raw": {"spark.sql.parquet.compression.codec": "lz4_raw"},
    "none": {"spark.sql.parquet.compression.codec": "uncompressed"},
    "nodict_none": {"parquet.enable.dictionary": "false", "spark.sql.parquet.compression.codec": "uncompressed"},
    # no sort before the partitioned write: up to 32 open files per task
    "concurrent": {"spark.sql.maxConcurrentOutputFileWriters": "32"},
}


def main(lake: Path, policies: list[str], settings: list[str]) -> None:
    from pyspark import StorageLevel

    from dynamix_spark.ebf import build_examples
    from dynamix_spark.session import build_spark
    from jobs.build_ebf import read_inputs, stage_policies

    cfg = bench_cfg(lake, policies)
    spark = build_spark("bench-ebf-write-settings", SPARK_CONF, master="local[2]")
    inp = read_inputs(spark, cfg, DAYS[1])
    ex = build_examples(inp["queries"], inp["events"], inp["segments"], inp["conversions"], cfg.stats, cfg.ebf,
                        cfg.segmentation.null_corr_segment).persist(StorageLevel.MEMORY_AND_DISK)
    t0 = time.perf_counter()
    ex.count()
    print(json.dumps({"build+cache_s": round(time.perf_counter() - t0, 1)}), flush=True)
    out = DATA.parent / "write-settings"
    for ps in ([policies[:1], policies] if len(policies) > 1 else [policies]):
        staged = stage_policies(ex, ps, cfg.ebf, DAYS[1])
        for i, name in enumerate(settings):
            conf = SETTINGS[name]
            for k, v in conf.items():
                spark.conf.set(k, v)
            d = out / f"{i}-{name}{len(ps)}"
            shutil.rmtree(d, ignore_errors=True)
            t0 = time.perf_counter()
            staged.write.format("parquet").partitionBy("ds", "policy", "segment").save(str(d))
            secs = time.perf_counter() - t0
            for k in conf:
                spark.conf.unset(k)
            mb = sum(f.stat().st_size for f in d.rglob("*.parquet")) / 1e6
            print(json.dumps({"policies": len(ps), "setting": name, "s": round(secs, 1), "MB": round(mb, 1)}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3].split(","))
