"""The vectorised EBF build (``dynamix_spark.ebf``) against the previous Spark-window build, kept as an
independent oracle in ``tests/ebf_reference.py``: the same rows, bit for bit, on the generated days; Arrow
batches cut anywhere (state carried across batches); the age buckets against Spark's own expression; and
a power user with a million events in a day streamed through on the local profile's driver memory."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
from pyspark.sql import functions as F

import ebf_reference
from conftest import MID_DS, lake_config
from dynamix_spark import ebf
from dynamix_spark.window_stats import US


def _inputs(spark, cfg, ds):
    from jobs.build_ebf import read_inputs

    inp = read_inputs(spark, cfg, ds)
    return (inp["queries"], inp["events"], inp["segments"], inp["conversions"], cfg.stats, cfg.ebf,
            cfg.segmentation.null_corr_segment)


def _assert_same_rows(new, old):
    cols = old.columns
    assert sorted(new.columns) == sorted(cols)
    new, old = new.select(*cols), old.select(*cols)
    n_new, n_old = new.count(), old.count()
    assert n_new == n_old and n_new > 0
    # Row multisets, both ways (exceptAll keeps duplicates).
    assert new.exceptAll(old).limit(5).collect() == []
    assert old.exceptAll(new).limit(5).collect() == []
    return n_new


def test_age_buckets_equal_sparks_expression(spark):
    thr = ebf.age_thresholds(spark)
    rng = np.random.default_rng(1)
    edges = [(2 ** k - 1) * US + o for k in range(1, 41) for o in (-2, -1, 0, 1, 2)]
    # random ages from 1 us to 30 days, log-uniform, plus every boundary's neighbours
    rand = np.exp(rng.uniform(0, np.log(30 * 86400 * US), 20000)).astype(np.int64)
    d = np.concatenate([np.asarray(edges, np.int64), rand, np.array([1, 999_999, 1_000_000, 10 ** 18])])
    got = spark.createDataFrame([(int(x),) for x in d], "d long").select(
        "d", ebf.age_bucket(F.col("d"), F.lit(0).cast("long")).alias("b")).collect()
    spark_b = {r["d"]: r["b"] for r in got}
    mine = 1 + np.searchsorted(thr, d, side="right")
    assert all(spark_b[int(x)] == int(b) for x, b in zip(d, mine))
    # by hand: 1 s -> log2(2) = 1 -> bucket 2; 59 s -> floor(log2 60) = 5 -> 6; beyond 2^40 s -> 41
    assert [int(1 + np.searchsorted(thr, x * US, side="right")) for x in (0.5, 1, 59, 2 ** 41)] == [1, 2, 6, 41]


@pytest.fixture(scope="module")
def reference_day(spark, tiny_cfg, tiny_pipeline):
    """The previous build of the generated middle day, computed once (cached) for the comparisons."""
    args = _inputs(spark, tiny_cfg, MID_DS)
    old = ebf_reference.build_examples(*args).persist()
    yield args, old
    old.unpersist()


@pytest.mark.parametrize("batch_rows", [None, 37])
def test_equals_previous_build_on_generated_day(spark, reference_day, batch_rows):
    """Every example of the generated middle day, every column, with Arrow batches of the default size and
    of 37 rows (a user's history then spans many batches)."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    if batch_rows:
        spark.conf.set(key, str(batch_rows))
    args, old = reference_day
    try:
        n = _assert_same_rows(ebf.build_examples(*args), old)
    finally:
        spark.conf.set(key, before)
    assert n > 1000


@pytest.mark.slow
def test_equals_previous_build_with_long_sequences(spark, tiny_cfg, tiny_pipeline):
    """Sequences longer than most users' histories (padding) and a source left out (zeros, length 0)."""
    cfg = replace(tiny_cfg, ebf=replace(tiny_cfg.ebf, seq_len={"ad": 64, "organic": 3, "page": 40}))
    q, events, *rest = _inputs(spark, cfg, MID_DS)
    events = {k: v for k, v in events.items() if k != "organic"}
    _assert_same_rows(ebf.build_examples(q, events, *rest), ebf_reference.build_examples(q, events, *rest))


@pytest.mark.slow
def test_equals_previous_build_on_demo_day(spark, tmp_path_factory):
    """The demo's default dataset (4,000 users), its middle day, row for row (slow: the old build takes
    minutes)."""
    from dynamix_spark.generate import write_raw
    from jobs import denoise, user_window_stats

    root = tmp_path_factory.mktemp("demo_day")
    cfg = lake_config(root)
    write_raw(spark, cfg.generator, cfg.paths.raw_root, cfg.paths.truth_root)
    days = [(dt.date.fromisoformat(cfg.generator.start_date) + dt.timedelta(days=k)).isoformat()
            for k in range(cfg.generator.days)]
    for ds in days:
        denoise.run(spark, cfg, ds)
    user_window_stats.run(spark, cfg, days[0])
    user_window_stats.run(spark, cfg, days[1])
    args = _inputs(spark, cfg, days[1])
    n = _assert_same_rows(ebf.build_examples(*args), ebf_reference.build_examples(*args))
    print(f"demo day {days[1]}: {n} examples equal")


@pytest.mark.slow
def test_power_user_with_a_million_events_streams(spark):
    """One user with 1M ad impressions in a day (and 200k organic events) on the test session's 4 GB
    driver: the build finishes, and examples at the start, middle and end of the day hold the right
    history (the events are one per 86 ms, so the last N before t are known by arithmetic)."""
    n, step_us = 1_000_000, 86_400 * US // 1_000_000
    day0 = int(dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc).timestamp()) * US
    ads = spark.range(n).select(
        F.format_string("e%07d", "id").alias("event_id"), F.lit(7).cast("long").alias("user_id"),
        F.timestamp_micros(F.lit(day0) + F.col("id") * step_us).alias("event_ts"),
        (F.col("id") % 1000).alias("ad_id"), F.lit(1).cast("long").alias("campaign_id"),
        F.lit(1).cast("long").alias("advertiser_id"), F.lit(1).cast("long").alias("category_id"),
        F.array(F.lit(1).cast("long")).alias("semantic_ids"), F.lit("feed").alias("surface"),
        F.lit("video").alias("media_type"), (F.col("id") % 50).cast("int").alias("position"),
        F.lit("ios").alias("device_type"), (F.lit(300) + F.col("id") % 5000).alias("dwell_ms"))
    org = spark.range(n // 5).select(
        F.format_string("o%07d", "id").alias("event_id"), F.lit(7).cast("long").alias("user_id"),
        F.timestamp_micros(F.lit(day0) + F.col("id") * step_us * 5 + 1).alias("event_ts"),
        F.col("id").alias("content_id"), F.lit(400).cast("long").alias("dwell_ms"),
        F.lit("image").alias("media_type"), F.lit(1).alias("position"))
    page = spark.createDataFrame([], "event_id string, user_id long, event_ts timestamp, page_id long, "
                                     "semantic_ids array<long>, media_type string")
    segs = spark.createDataFrame([(7, dt.datetime(2026, 11, 2, 6), 1)], "user_id long, window_end timestamp, segment int")
    conv = spark.createDataFrame([], "user_id long, ad_id long, event_ts timestamp")
    from dynamix_spark.config import EbfConfig, StatsConfig

    cfg = EbfConfig(seq_len={"ad": 16, "organic": 16, "page": 16})
    ex = ebf.build_examples(ads, {"ad": ads, "organic": org, "page": page}, segs, conv, StatsConfig(), cfg)
    picks = [0, 1, 17, 500_000, n - 1]
    got = {r["event_ts_us"]: r for r in ex.where(F.col("event_ts_us").isin([day0 + i * step_us for i in picks]))
           .select("event_ts_us", "ad_len", "ad_seq_position", "organic_len", "segment").collect()}
    assert ex.count() == n
    for i in picks:
        r = got[day0 + i * step_us]
        assert r["ad_len"] == min(16, i)
        assert r["ad_seq_position"][: min(16, i)] == [(i - 1 - j) % 50 + 1 for j in range(min(16, i))]
        assert r["organic_len"] == min(16, (i + 4) // 5)  # organic k at 5k steps + 1 us, before t iff 5k < i
        assert r["segment"] == (1 if i * step_us >= 6 * 3600 * US else 0)
