"""Benchmark of the user_window_stats computation (labelling + per-window statistics).

For each size, the same Parquet input is processed by
  - ``dynamix``: the project's sort + running-min formulation (``dynamix_spark.window_stats``),
  - ``range_join``: Spark with the textbook range join (impressions x conversions on user and
    c BETWEEN t - b AND t + s, then EXISTS per impression),
  - ``duckdb``: DuckDB on the same Parquet (ASOF join for the first conversion at or after t - b),
  - ``sort_floor``: only the shuffle by user and the sort (no labels): the least any one-sort Spark
    formulation can cost on this machine,
each in a fresh process whose peak RSS (process tree) is sampled, on local[2] / 2 DuckDB threads.
All three write the same per-window statistics; their n_pos totals are compared.

    .venv/bin/python bench/bench_stats.py --sizes 1000000 10000000 50000000 --horizons 60 300 3600

Results are appended as a section to BENCHMARKS.md (and printed as JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("DYNAMIX_BENCH_DATA", "/tmp/dynamix-bench"))
SPARK_CONF = {"spark.sql.shuffle.partitions": "16", "spark.driver.memory": "10g", "spark.ui.enabled": "false"}


def make_input(n_imps: int) -> Path:
    """n_imps ad impressions over one day for n_imps / 200 users (heavy-tailed), ~5% as many conversions."""
    out = DATA / f"n{n_imps}"
    if (out / "_DONE").exists():
        return out
    from pyspark.sql import functions as F

    from dynamix_spark.session import build_spark

    spark = build_spark("bench-input", SPARK_CONF, master="local[2]")
    n_users = max(100, n_imps // 200)
    day0 = 1_793_491_200  # 2026-11-02 00:00 UTC
    h = lambda salt, c: (F.xxhash64(F.lit(salt), c).bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53))
    # user id skewed: u^3 puts many events on low ids (the top user gets ~1% of all events)
    imps = spark.range(n_imps, numPartitions=max(2, n_imps // 2_000_000)).select(
        (F.floor(F.pow(h("u", F.col("id")), 3) * n_users) + 1).cast("long").alias("user_id"),
        F.timestamp_seconds(F.lit(day0) + F.floor(h("t", F.col("id")) * 86_400).cast("long")).alias("event_ts"),
        (F.exp(F.lit(8.0) + F.lit(0.6) * (h("d", F.col("id")) - 0.5) * 3.4)).cast("long").alias("dwell_ms"),
    )
    n_conv = n_imps // 20
    conv = spark.range(n_conv, numPartitions=max(2, n_conv // 2_000_000)).select(
        (F.floor(F.pow(h("cu", F.col("id")), 3) * n_users) + 1).cast("long").alias("user_id"),
        F.timestamp_seconds(F.lit(day0 - 3600) + F.floor(h("ct", F.col("id")) * (86_400 + 7200)).cast("long")).alias("event_ts"),
    )
    imps.write.mode("overwrite").parquet(str(out / "imps"))
    conv.write.mode("overwrite").parquet(str(out / "conv"))
    spark.stop()
    (out / "_DONE").write_text("ok")
    return out


def run_dynamix(inp: Path, s: int) -> dict:
    from pyspark.sql import functions as F

    from dynamix_spark.config import StatsConfig
    from dynamix_spark.session import build_spark
    from dynamix_spark.window_stats import label_impressions, window_stats

    spark = build_spark("bench-dynamix", SPARK_CONF, master="local[2]")
    imps, conv = spark.read.parquet(str(inp / "imps")), spark.read.parquet(str(inp / "conv"))
    spark.range(1).count()
    t0 = time.perf_counter()
    stats = window_stats(label_impressions(imps, conv, StatsConfig(forecast_horizon_s=s)), StatsConfig(forecast_horizon_s=s))
    stats.write.mode("overwrite").parquet(str(inp / "out_dynamix"))
    wall = time.perf_counter() - t0
    n_pos = spark.read.parquet(str(inp / "out_dynamix")).agg(F.sum("n_pos")).first()[0]
    return {"wall_s": wall, "n_pos": int(n_pos)}


def run_arrow(inp: Path, s: int) -> dict:
    """The labelling's sort, then labels and partial statistics in one ``mapInArrow`` pass
    (``bench/stats_arrow.py``, a candidate not adopted), then the same merge per window."""
    from pyspark.sql import functions as F

    from dynamix_spark.config import StatsConfig
    from dynamix_spark.session import build_spark
    from stats_arrow import window_stats_arrow

    spark = build_spark("bench-arrow", SPARK_CONF, master="local[2]")
    spark.sparkContext.addPyFile(str(ROOT / "bench" / "stats_arrow.py"))  # the Python workers import it too
    imps, conv = spark.read.parquet(str(inp / "imps")), spark.read.parquet(str(inp / "conv"))
    spark.range(1).count()
    t0 = time.perf_counter()
    window_stats_arrow(imps, conv, StatsConfig(forecast_horizon_s=s)).write.mode("overwrite").parquet(
        str(inp / "out_arrow"))
    wall = time.perf_counter() - t0
    n_pos = spark.read.parquet(str(inp / "out_arrow")).agg(F.sum("n_pos")).first()[0]
    return {"wall_s": wall, "n_pos": int(n_pos)}


def run_sort_floor(inp: Path, s: int) -> dict:
    """The floor of any one-sort formulation: shuffle the impressions by user and sort them, nothing else."""
    from pyspark.sql import functions as F

    from dynamix_spark.session import build_spark

    spark = build_spark("bench-sort-floor", SPARK_CONF, master="local[2]")
    imps = spark.read.parquet(str(inp / "imps"))
    spark.range(1).count()
    t0 = time.perf_counter()
    (imps.repartition("user_id").sortWithinPartitions("user_id", "event_ts")
     .write.format("noop").mode("overwrite").save())
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "n_pos": None}


def run_range_join(inp: Path, s: int) -> dict:
    from pyspark.sql import functions as F

    from dynamix_spark.config import StatsConfig
    from dynamix_spark.session import build_spark
    from dynamix_spark.window_stats import window_stats

    spark = build_spark("bench-range-join", SPARK_CONF, master="local[2]")
    imps = spark.read.parquet(str(inp / "imps")).withColumn("imp_id", F.monotonically_increasing_id())
    conv = spark.read.parquet(str(inp / "conv")).select("user_id", F.col("event_ts").alias("c"))
    spark.range(1).count()
    t0 = time.perf_counter()
    cond = ((imps.user_id == conv.user_id) & (conv.c >= imps.event_ts - F.expr("INTERVAL 60 SECONDS"))
            & (conv.c <= imps.event_ts + F.expr(f"INTERVAL {s} SECONDS")))
    hits = imps.join(conv, cond, "left_semi").select("imp_id").withColumn("label", F.lit(1))
    labelled = imps.join(hits, "imp_id", "left").fillna({"label": 0})
    cfg = StatsConfig(forecast_horizon_s=s)
    window_stats(labelled.select("user_id", "event_ts", "dwell_ms", "label"), cfg).write.mode("overwrite").parquet(
        str(inp / "out_range"))
    wall = time.perf_counter() - t0
    n_pos = spark.read.parquet(str(inp / "out_range")).agg(F.sum("n_pos")).first()[0]
    return {"wall_s": wall, "n_pos": int(n_pos)}


def run_duckdb(inp: Path, s: int) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    con.execute(f"""
    COPY (
      WITH i AS (SELECT user_id, event_ts, dwell_ms, event_ts - INTERVAL 60 SECOND AS k
                 FROM read_parquet('{inp}/imps/*.parquet')),
           c AS (SELECT user_id, event_ts AS c FROM read_parquet('{inp}/conv/*.parquet')),
           l AS (SELECT i.user_id, i.event_ts, ln(i.dwell_ms) AS x,
                        CASE WHEN c.c IS NOT NULL AND c.c <= i.event_ts + INTERVAL {s} SECOND THEN 1 ELSE 0 END AS y
                 FROM i ASOF LEFT JOIN c ON i.user_id = c.user_id AND c.c >= i.k)
      SELECT user_id, time_bucket(INTERVAL 6 HOUR, event_ts) AS window_start,
             sum(y) AS n_pos, sum(1 - y) AS n_neg,
             avg(x) FILTER (WHERE y = 1) - avg(x) FILTER (WHERE y = 0) AS corr,
             var_samp(x) FILTER (WHERE y = 1) AS var_pos, var_samp(x) FILTER (WHERE y = 0) AS var_neg
      FROM l GROUP BY ALL
    ) TO '{inp}/out_duckdb.parquet' (FORMAT parquet)""")
    wall = time.perf_counter() - t0
    n_pos = con.execute(f"SELECT sum(n_pos) FROM '{inp}/out_duckdb.parquet'").fetchone()[0]
    return {"wall_s": wall, "n_pos": int(n_pos)}


METHODS = {"dynamix": run_dynamix, "arrow": run_arrow, "sort_floor": run_sort_floor, "range_join": run_range_join,
           "duckdb": run_duckdb}


def measure(method: str, inp: Path, s: int, timeout_s: int) -> dict:
    """Run one method in a fresh process; sample the peak RSS of its process tree (JVM included)."""
    return measure_cmd([sys.executable, __file__, "--one", method, str(inp), str(s)], timeout_s)


def measure_cmd(cmd: list[str], timeout_s: int) -> dict:
    """Run ``cmd`` (its last stdout line is a JSON result) and add the peak RSS of its process tree."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        lines = out.strip().splitlines()
        # a child that was killed (out of memory, by hand) or crashed prints no result: record that, go on
        res = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"wall_s": None, "failed_rc": proc.returncode}
    except subprocess.TimeoutExpired:
        for c in psutil.Process(proc.pid).children(recursive=True):
            c.kill()
        proc.kill()
        proc.communicate()
        res = {"wall_s": None, "timed_out_after_s": timeout_s}
    stop.set()
    th.join()
    res["peak_rss_gb"] = round(peak / 2**30, 2)
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        method, inp, s = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(METHODS[method](inp, s)))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    p.add_argument("--horizons", type=int, nargs="+", default=[60, 300, 3600])
    p.add_argument("--range-join-max", type=int, default=10_000_000, help="largest size to run the range join on")
    p.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--out", default=str(ROOT / "bench" / "results_stats.json"))
    args = p.parse_args()
    results = []
    for n in args.sizes:
        inp = make_input(n)
        for method in args.methods:
            if method == "range_join" and n > args.range_join_max:
                continue
            horizons = args.horizons if method == "dynamix" and n == sorted(args.sizes)[min(1, len(args.sizes) - 1)] else [300]
            for s in horizons:
                r = measure(method, inp, s, args.timeout)
                r.update({"method": method, "n_impressions": n, "s": s})
                if r.get("wall_s"):
                    r["events_per_s"] = round(n / r["wall_s"])
                print(json.dumps(r), flush=True)
                results.append(r)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
