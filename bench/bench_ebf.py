"""Benchmark of the build_ebf job (point-in-time EBF examples) at N ad impressions for the built day.

Synthetic clean tables are written straight to a bench lake (no denoise): for the built day and the
lookback day each, N ad impressions for N / 100 users with u^3 skew (the top user holds a few % of all
events), 0.75 N organic and 0.15 N page impressions, 0.05 N conversions attributed to an ad, and
``user_segments`` for every user and 6 h window. Then ``jobs.build_ebf.run`` runs in a fresh process
(local[2], 10 GB driver) for the given policies; wall time and peak RSS of the process tree are recorded.

Beside it, in the same run and on the same lake (``--methods``, each in a fresh process):
- ``sort_floor``: the build's input rows (the day's queries, the lookback's events of the 3 sources, the
  segments and conversions, all their columns) shuffled by user and sorted by (user, time), written to the
  ``noop`` sink: the least any one-shuffle, one-sort Spark build can cost;
- ``build`` / ``reference_build``: the sequence build alone into the ``noop`` sink (no gate, no write),
  the vectorised one and the previous Spark-window one (kept in tests/ebf_reference.py);
- ``dynamix_all_policies``: the job writing all 5 build policies (one build, 5 projections in one commit),
  beside ``dynamix`` with ``--policies baseline`` for the 1.5x target;
- ``duckdb``: the same point-in-time sequences in plain DuckDB SQL (2 threads) over the tables' Parquet
  files: an ASOF join to each source's last event before t, an equi-join on per-user row numbers
  (last_rn - j for j < N) and list aggregation, plus the as-of segment, with the plain (unhashed) numeric
  attributes and the age in seconds: what a user with one machine would write.

    .venv/bin/python bench/bench_ebf.py --sizes 1000000 10000000 --methods dynamix sort_floor duckdb
    .venv/bin/python bench/bench_ebf.py --sizes 1000000 --methods dynamix dynamix_all_policies sort_floor duckdb
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATA = Path(os.environ.get("DYNAMIX_BENCH_DATA", "/tmp/dynamix-bench")) / "ebf"
# BENCH_DRIVER_MEMORY (--driver-memory): the JVM's heap limit; the process tree's peak RSS follows it (the JVM
# grows into its heap before collecting), so a memory target is checked with the smallest heap that finishes.
SPARK_CONF = {"spark.sql.shuffle.partitions": "16", "spark.driver.memory": os.environ.get("BENCH_DRIVER_MEMORY", "10g"),
              "spark.ui.enabled": "false"}
DAYS = ("2026-11-01", "2026-11-02")  # lookback day, built day


def make_lake(n: int) -> Path:
    lake = DATA / f"n{n}"
    if (lake / "_DONE").exists():
        return lake
    from pyspark.sql import functions as F

    from dynamix_spark.session import build_spark

    spark = build_spark("bench-ebf-input", SPARK_CONF, master="local[2]")
    n_users = max(100, n // 100)
    h = lambda salt, c: (F.xxhash64(F.lit(salt), c).bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53))  # noqa: E731
    user = lambda salt: (F.floor(F.pow(h(salt, F.col("id")), 3) * n_users) + 1).cast("long")  # noqa: E731

    def rows(k: int, salt: str, day: str):
        day0 = int(time.mktime(time.strptime(day, "%Y-%m-%d"))) - time.timezone
        return spark.range(k, numPartitions=max(2, k // 1_000_000)).select(
            F.concat(F.lit(f"{salt}{day}-"), F.col("id").cast("string")).alias("event_id"), user(salt + day).alias("user_id"),
            F.timestamp_seconds(F.lit(day0) + F.floor(h(salt + day + "t", F.col("id")) * 86_400).cast("long")).alias("event_ts"),
            F.col("id"))

    for day in DAYS:
        ads = rows(n, "a", day).select(
            "event_id", "user_id", "event_ts", (F.col("id") % 20000 + 1).alias("ad_id"),
            (F.col("id") % 2000).alias("campaign_id"), (F.col("id") % 200).alias("advertiser_id"),
            (F.col("id") % 50).alias("category_id"), F.array(F.col("id") % 500, F.col("id") % 7).alias("semantic_ids"),
            F.lit("feed").alias("surface"), F.lit("video").alias("media_type"), (F.col("id") % 20).cast("int").alias("position"),
            F.lit("ios").alias("device_type"), (F.lit(300) + F.col("id") % 20000).alias("dwell_ms"), F.lit(day).alias("ds"))
        org = rows(int(0.75 * n), "o", day).select(
            "event_id", "user_id", "event_ts", (F.col("id") % 100000).alias("content_id"),
            (F.lit(300) + F.col("id") % 9000).alias("dwell_ms"), F.lit("image").alias("media_type"),
            (F.col("id") % 50).cast("int").alias("position"), F.lit(day).alias("ds"))
        page = rows(int(0.15 * n), "p", day).select(
            "event_id", "user_id", "event_ts", (F.col("id") % 5000).alias("page_id"),
            F.array(F.col("id") % 300).alias("semantic_ids"), F.lit("text").alias("media_type"), F.lit(day).alias("ds"))
        conv = rows(max(1, n // 20), "c", day).select(
            "event_id", "user_id", "event_ts", (F.col("id") % 20000 + 1).alias("ad_id"),
            F.lit("click").alias("conversion_type"), F.lit(day).alias("ds"))
        segs = (spark.range(1, n_users + 1).select(F.col("id").alias("user_id"))
                .crossJoin(spark.range(4).select(F.col("id").alias("w")))  # 4 windows a day: a tiny dimension
                .select("user_id", F.timestamp_seconds(F.unix_timestamp(F.lit(day).cast("timestamp")) + (F.col("w") + 1) * 21600)
                        .alias("window_end"), (F.xxhash64("user_id", "w") % 2 == 0).cast("int").alias("segment"),
                        F.lit(day).alias("ds")))
        for name, df in (("clean_ad_impressions", ads), ("clean_organic_impressions", org),
                         ("clean_page_impressions", page), ("clean_conversions", conv), ("user_segments", segs)):
            df.write.format("delta").mode("append").partitionBy("ds").save(str(lake / name))
    spark.stop()
    (lake / "_DONE").write_text("ok")
    return lake


def bench_cfg(lake: Path, policies: list[str]):
    """The local profile on a bench lake: one lookback day, these build policies, the bench's Spark settings."""
    from dynamix_spark.config import load_config

    return load_config(ROOT / "conf" / "local.yaml", [
        f"paths.lake_root={lake}", "ebf.lookback_days=1", f"ebf.build_policies={json.dumps(policies)}",
        "spark.conf={}"])


def run_one(lake: Path, policies: list[str]) -> dict:
    from dynamix_spark.session import build_spark
    from jobs import build_ebf

    cfg = bench_cfg(lake, policies)
    spark = build_spark("bench-ebf", SPARK_CONF, master="local[2]")
    spark.range(1).count()
    t0 = time.perf_counter()
    rep = build_ebf.run(spark, cfg, DAYS[1])
    wall = time.perf_counter() - t0
    from training.delta_snapshot import live_files

    size: dict[str, int] = {}
    for f in live_files(str(lake / "ebf_examples")):
        if f.partition_values.get("ds") == DAYS[1]:
            size[f.partition_values["policy"]] = size.get(f.partition_values["policy"], 0) + f.size
    return {"wall_s": wall, "examples": rep["examples"], "max_examples_per_user": rep["max_examples_per_user"],
            "bytes_per_example": {p: round(b / rep["examples"], 1) for p, b in sorted(size.items())}}


def run_sort_floor(lake: Path, policies: list[str]) -> dict:
    from pyspark.sql import functions as F

    from dynamix_spark.config import load_config
    from dynamix_spark.session import build_spark
    from jobs.build_ebf import read_inputs

    cfg = load_config(ROOT / "conf" / "local.yaml", [f"paths.lake_root={lake}", "ebf.lookback_days=1", "spark.conf={}"])
    spark = build_spark("bench-ebf-sort-floor", SPARK_CONF, master="local[2]")
    spark.range(1).count()
    t0 = time.perf_counter()
    inp = read_inputs(spark, cfg, DAYS[1])
    frames = [inp["queries"], *inp["events"].values(), inp["conversions"],
              inp["segments"].withColumnRenamed("window_end", "event_ts")]
    u = frames[0]
    for f in frames[1:]:
        u = u.unionByName(f, allowMissingColumns=True)
    u.repartition("user_id").sortWithinPartitions("user_id", "event_ts").write.format("noop").mode("overwrite").save()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "examples": inp["queries"].count()}


def run_duckdb(lake: Path, policies: list[str], n_seq: int = 16) -> dict:
    import duckdb

    from training.delta_snapshot import live_files

    def files(table: str, days: tuple[str, ...]) -> str:
        fs = [f.path for f in live_files(str(lake / table)) if f.partition_values.get("ds") in days]
        return "[" + ", ".join(f"'{p}'" for p in fs) + "]"

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(f"SET temp_directory = '{DATA / 'duckdb_tmp'}'")  # spills go with the bench data, not into the checkout
    if os.environ.get("BENCH_DUCKDB_MEMORY"):  # e.g. 8GB: DuckDB spills past it (default: 80% of RAM)
        con.execute(f"SET memory_limit = '{os.environ['BENCH_DUCKDB_MEMORY']}'")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    day = DAYS[1]
    srcs = {"ad": ("clean_ad_impressions", ["ad_id", "campaign_id", "advertiser_id", "category_id", "position", "dwell_ms"]),
            "organic": ("clean_organic_impressions", ["content_id", "position", "dwell_ms"]),
            "page": ("clean_page_impressions", ["page_id"])}
    t0 = time.perf_counter()
    con.execute(f"""CREATE TEMP TABLE q AS SELECT user_id, event_id, epoch_us(event_ts) AS t, ad_id, campaign_id
                    FROM read_parquet({files('clean_ad_impressions', DAYS)}) WHERE CAST(event_ts AS DATE) = DATE '{day}'""")
    parts = []
    for s, (table, attrs) in srcs.items():
        cols = ", ".join(attrs)
        con.execute(f"""CREATE TEMP TABLE e_{s} AS SELECT user_id, epoch_us(event_ts) AS ts, {cols},
                        row_number() OVER (PARTITION BY user_id ORDER BY event_ts, event_id) AS rn
                        FROM read_parquet({files(table, DAYS)}) WHERE event_ts < TIMESTAMP '{day}' + INTERVAL 1 DAY""")
        lists = ", ".join(f"list(e.{a} ORDER BY e.rn DESC) AS {s}_{a}" for a in attrs)
        parts.append(f"""{s} AS (
          SELECT qa.event_id, {lists}, list((qa.t - e.ts) // 1000000 ORDER BY e.rn DESC) AS {s}_age, count(e.rn) AS {s}_len
          FROM (SELECT q.event_id, q.user_id, q.t, e.rn AS last_rn FROM q ASOF LEFT JOIN e_{s} e
                ON q.user_id = e.user_id AND q.t > e.ts) qa
          CROSS JOIN range({n_seq}) AS j(j)
          LEFT JOIN e_{s} e ON e.user_id = qa.user_id AND e.rn = qa.last_rn - j.j
          GROUP BY qa.event_id)""")
    con.execute(f"""CREATE TEMP TABLE seg AS SELECT user_id, epoch_us(window_end) AS te, segment
                    FROM read_parquet({files('user_segments', DAYS)})""")
    con.execute(f"""COPY (
      WITH {", ".join(parts)},
      sg AS (SELECT q.event_id, s.segment, s.te FROM q ASOF LEFT JOIN seg s ON q.user_id = s.user_id AND q.t >= s.te)
      SELECT q.user_id, q.t, q.ad_id, q.campaign_id, sg.segment, sg.te, ad.*, organic.*, page.*
      FROM q JOIN ad USING (event_id) JOIN organic USING (event_id) JOIN page USING (event_id) JOIN sg USING (event_id)
    ) TO '{DATA}/out_duckdb.parquet' (FORMAT parquet)""")
    wall = time.perf_counter() - t0
    n = con.execute(f"SELECT count(*) FROM '{DATA}/out_duckdb.parquet'").fetchone()[0]
    return {"wall_s": wall, "examples": int(n)}


def _build_noop(lake: Path, build) -> dict:
    from dynamix_spark.config import load_config
    from dynamix_spark.session import build_spark
    from jobs.build_ebf import read_inputs

    cfg = load_config(ROOT / "conf" / "local.yaml", [f"paths.lake_root={lake}", "ebf.lookback_days=1", "spark.conf={}"])
    spark = build_spark("bench-ebf-build", SPARK_CONF, master="local[2]")
    spark.range(1).count()
    t0 = time.perf_counter()
    inp = read_inputs(spark, cfg, DAYS[1])
    ex = build(inp["queries"], inp["events"], inp["segments"], inp["conversions"], cfg.stats, cfg.ebf,
               cfg.segmentation.null_corr_segment)
    ex.write.format("noop").mode("overwrite").save()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "examples": inp["queries"].count()}


def run_build(lake: Path, policies: list[str]) -> dict:
    """The sequence build alone (``dynamix_spark.ebf.build_examples``) into the ``noop`` sink: no gate, no write."""
    from dynamix_spark.ebf import build_examples

    return _build_noop(lake, build_examples)


def run_reference_build(lake: Path, policies: list[str]) -> dict:
    """The previous Spark-window build (tests/ebf_reference.py, the equivalence oracle) the same way."""
    sys.path.insert(0, str(ROOT / "tests"))
    from ebf_reference import build_examples

    return _build_noop(lake, build_examples)


ALL_POLICIES = ["baseline", "remove_passive", "remove_active", "boost_all", "boost_active"]
METHODS = {"dynamix": run_one, "dynamix_all_policies": lambda lake, _: run_one(lake, ALL_POLICIES), "build": run_build, "reference_build": run_reference_build,
           "sort_floor": run_sort_floor, "duckdb": run_duckdb}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        method, lake, policies = sys.argv[2], Path(sys.argv[3]), sys.argv[4].split(",")
        print(json.dumps(METHODS[method](lake, policies)))
        return
    from bench_stats import measure_cmd

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    p.add_argument("--policies", nargs="+", default=["baseline"])
    p.add_argument("--methods", nargs="+", default=["dynamix"], choices=sorted(METHODS))
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--out", default=str(ROOT / "bench" / "results_ebf.json"))
    p.add_argument("--driver-memory", default=os.environ.get("BENCH_DRIVER_MEMORY", "10g"))
    args = p.parse_args()
    os.environ["BENCH_DRIVER_MEMORY"] = args.driver_memory  # the --one processes read it
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    for n in args.sizes:
        lake = make_lake(n)
        for method in args.methods:
            pol = {"dynamix": args.policies, "dynamix_all_policies": ALL_POLICIES}.get(method, ["baseline"])
            r = measure_cmd([sys.executable, __file__, "--one", method, str(lake), ",".join(pol)], args.timeout)
            r.update({"method": method, "n_impressions": n, "policies": pol, "driver_memory": args.driver_memory,
                      "at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_avg": os.getloadavg()[0]})
            if r.get("wall_s"):
                r["examples_per_s"] = round(r["examples"] * len(pol) / r["wall_s"])
            print(json.dumps(r), flush=True)
            results.append(r)
            out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
