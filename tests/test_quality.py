"""Quality gates: every critical expectation fails on a deliberately broken staged DataFrame, a good one
passes, results land in ``quality_results`` and a failed gate leaves the published Delta table as it was.

Each broken case changes one thing in a hand-built DataFrame that passes, and asserts that exactly the
expected critical checks fail (the set is written by hand, not derived from the gate's own output).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from conftest import ROOT, lake_config
from dynamix_spark.config import ConfigError, load_config
from dynamix_spark.delta_io import conform, overwrite_partition, table_path, table_version
from dynamix_spark.quality import (
    QualityGateError,
    Reconciliation,
    _gx,
    _to_gx,
    gate,
    publish_or_fail,
    suite_settings,
)
from schemas.ebf import EBF_EXAMPLES
from schemas.expectations import SUITE_SCHEMAS, suite
from schemas.raw import AD_IMPRESSIONS
from schemas.tables import CLEAN_TABLES, USER_WINDOW_STATS

DS = "2026-11-02"
PREV = "2026-11-01"
CLEAN_AD = CLEAN_TABLES["clean_ad_impressions"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    return lake_config(root, "quality.docs_dir=''")


def with_docs(cfg, path: Path):
    return dataclasses.replace(cfg, quality=dataclasses.replace(cfg.quality, docs_dir=str(path)))


def run(spark, df, table, cfg, **kw):
    kw.setdefault("record", False)
    kw.setdefault("load_previous", False)
    return gate(spark, df, table, DS, cfg, job="test", run_id=kw.pop("run_id", "test-run"), **kw)


def critical_failed(result) -> set[str]:
    return {c.expectation for c in result.critical_failures}


# ---- clean_ad_impressions -------------------------------------------------------------------------------

def ad_rows(n: int = 6) -> list[dict]:
    base = dt.datetime(2026, 11, 2, 10, 0)
    return [dict(event_id=f"e{i}", user_id=100 + i % 2, event_ts=base + dt.timedelta(minutes=7 * i), ad_id=10 + i,
                 campaign_id=3, advertiser_id=2, category_id=5, semantic_ids=[1, 2], surface="feed",
                 media_type="video", position=i, device_type="ios", dwell_ms=1_000 * (i + 1), ds=DS)
            for i in range(n)]


def ad_df(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in CLEAN_AD.fields) for r in rows], CLEAN_AD)


def broken(change):
    rows = ad_rows()
    change(rows)
    return rows


CLEAN_CASES = {
    "null_key": (lambda r: r[2].update(event_id=None), {"not_null:event_id"}),
    "duplicate_event_id": (lambda r: r[3].update(event_id="e0"), {"unique:event_id"}),
    # fixed bounds [250, 600000] ms
    "dwell_out_of_bounds": (lambda r: (r[1].update(dwell_ms=600_001), r[4].update(dwell_ms=249)), {"dwell_in_bounds"}),
    "wrong_ds": (lambda r: r[4].update(ds=PREV), {"freshness"}),
    "event_ts_off_day": (lambda r: r[4].update(event_ts=dt.datetime(2026, 11, 3, 1, 0, 1)), {"event_ts_on_day"}),
}


@pytest.mark.parametrize("case", sorted(CLEAN_CASES))
def test_clean_critical_expectation_fails_on_broken_input(spark, cfg, case):
    change, expected = CLEAN_CASES[case]
    result = run(spark, ad_df(spark, broken(change)), "clean_ad_impressions", cfg)
    assert not result.passed
    assert critical_failed(result) == expected
    if case == "dwell_out_of_bounds":
        observed = result.check("dwell_in_bounds").observed
        assert observed.startswith("2 of 6 rows unexpected") and "600001" in observed and "249" in observed


def test_clean_passing_input_passes_with_reconciliation_and_drift(spark, cfg):
    rows = ad_rows()
    staged = ad_df(spark, rows)
    # The raw partition as read: the 6 clean rows, an exact duplicate (a counted drop), a 100 ms dwell (a
    # counted drop) and a row with a null key (quarantined).
    raw_rows = [r for r in rows] + [rows[0], dict(rows[1], event_id="short", dwell_ms=100), dict(rows[2], event_id=None)]
    raw = spark.createDataFrame([tuple(r[f.name] for f in AD_IMPRESSIONS.fields) for r in raw_rows], AD_IMPRESSIONS)
    quarantined = raw.where(F.col("event_id").isNull())
    rec = Reconciliation(raw=raw, quarantined=quarantined, drops={"duplicate": 1, "dwell_below_min": 1})
    previous = ad_df(spark, [dict(r, ds=PREV) for r in rows])
    result = run(spark, staged, "clean_ad_impressions", cfg, reconciliation=rec, previous=previous)
    assert result.passed, result.critical_failures
    assert not result.warnings, result.warnings
    names = {c.expectation for c in result.checks}
    assert {"reconciliation", "drift:row_count", "drift:mean_log_dwell", "type:semantic_ids", "unique:event_id",
            "dwell_in_bounds", "freshness", "columns"} <= names
    assert result.check("reconciliation").observed.startswith("raw=9 vs clean=6 + quarantined=1 + drops=2 (diff 0)")

    # The same inputs with one counted drop forgotten: 9 raw rows, 8 accounted for.
    short = Reconciliation(raw=raw, quarantined=quarantined, drops={"duplicate": 1})
    bad = run(spark, staged, "clean_ad_impressions", cfg, reconciliation=short)
    assert critical_failed(bad) == {"reconciliation"}
    assert "diff 1" in bad.check("reconciliation").observed


def test_wrong_types_and_missing_column_fail(spark, cfg):
    df = (ad_df(spark, ad_rows()).withColumn("semantic_ids", F.col("semantic_ids").cast("array<int>"))
          .withColumn("user_id", F.col("user_id").cast("string")).drop("surface"))
    result = run(spark, df, "clean_ad_impressions", cfg)
    assert critical_failed(result) == {"type:semantic_ids", "type:user_id", "columns", "type:surface"}
    assert "array<int> (expected array<bigint>)" in result.check("type:semantic_ids").observed
    assert result.check("type:user_id").observed == "StringType"
    assert "surface" in result.check("columns").observed


# ---- user_window_stats ----------------------------------------------------------------------------------

def window_rows() -> list[dict]:
    """12 windows with a corr, 8 of them active (8/12 = 0.6667, the target), and one without a corr."""
    start = dt.datetime(2026, 11, 2, 0, 0)
    rows = []
    for i in range(13):
        has_corr = i < 12
        rows.append(dict(user_id=i, window_start=start, window_end=start + dt.timedelta(hours=6),
                         n_pos=2 if has_corr else 0, n_neg=5, mean_log_dwell_pos=8.5 if has_corr else None,
                         mean_log_dwell_neg=8.0, corr=(0.1 + 0.05 * i) * (1 if i % 2 else -1) if has_corr else None,
                         pooled_std=0.5, w_mle=None, bayes_w=None, bayes_b=None,
                         segment=1 if i < 8 else 0, epsilon=0.3, epsilon_mode="target_active_fraction", ds=DS))
    return rows


# Nullable everywhere, so that a broken frame can hold the null the published schema would refuse.
STATS_IN = StructType([StructField(f.name, f.dataType, True) for f in USER_WINDOW_STATS.fields])


def stats_df(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in STATS_IN.fields) for r in rows], STATS_IN)


def _with(i: int, **kw):
    return lambda rows: rows[i].update(**kw)


def _passive(*idx):
    return lambda rows: [rows[i].update(segment=0) for i in idx]


STATS_CASES = {
    "segment_not_allowed": (_with(3, segment=2), {"segment_allowed"}),  # binary mode: {0, 1}
    "corr_not_finite": (lambda r: (r[2].update(corr=float("nan")), r[5].update(corr=float("-inf"))), {"corr_finite"}),
    "corr_missing": (_with(1, corr=None), {"corr_present"}),  # 7 of 11 with a corr active: still in band
    "active_share_out_of_band": (_passive(0, 1, 2), {"active_share_band"}),  # 5/12 = 0.42, band 0.6167..0.7167
    "duplicate_window": (_with(4, user_id=3), {"unique:user_id,window_start"}),
}


@pytest.mark.parametrize("case", sorted(STATS_CASES))
def test_window_stats_critical_expectation_fails_on_broken_input(spark, cfg, case):
    change, expected = STATS_CASES[case]
    rows = window_rows()
    change(rows)
    result = run(spark, stats_df(spark, rows), "user_window_stats", cfg)
    assert critical_failed(result) == expected
    if case == "corr_not_finite":
        assert result.check("corr_finite").observed.startswith("2 of 12 rows unexpected")  # of the 12 with n >= 1


def test_window_stats_passes_and_drift_is_a_warning(spark, cfg):
    rows = window_rows()
    # Yesterday's negatives dwelt 1 nat longer (tolerance 0.25 nats); everything else the same.
    previous = stats_df(spark, [dict(r, mean_log_dwell_neg=9.0, ds=PREV) for r in rows])
    result = run(spark, stats_df(spark, rows), "user_window_stats", cfg, previous=previous)
    assert result.passed, result.critical_failures
    assert {c.expectation for c in result.warnings} == {"drift:mean_log_dwell_neg"}
    assert result.check("active_share_band").success
    assert result.check("active_share_band").observed.startswith("0.6667 of 12 windows")
    assert result.check("drift:active_share").success and result.check("drift:row_count").success


def test_active_share_band_is_a_warning_outside_target_mode(spark, cfg):
    fixed = dataclasses.replace(cfg, segmentation=dataclasses.replace(cfg.segmentation, epsilon_mode="fixed"))
    rows = window_rows()
    _passive(0, 1, 2)(rows)
    result = run(spark, stats_df(spark, rows), "user_window_stats", fixed)
    assert result.passed
    assert {c.expectation for c in result.warnings} == {"active_share_band"}


# ---- ebf_examples, raw ----------------------------------------------------------------------------------

def ebf_df(spark, n: int = 8, changes: dict[int, dict] | None = None):
    t0 = int(dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    rows = []
    for i in range(n):
        r = {}
        for f in EBF_EXAMPLES.fields:
            if f.name.endswith("_len"):
                r[f.name] = 3
            elif f.dataType.simpleString() == "array<int>":
                r[f.name] = [1, 2, 3]
            else:
                r[f.name] = 7
        r.update(user_id=i, event_ts_us=t0 + i, label=i % 4 == 0, segment_window_end_us=t0 - 1, ds=DS,
                 policy="baseline", segment=i % 2)
        r["label"] = int(r["label"])
        r.update((changes or {}).get(i, {}))
        rows.append(tuple(r[f.name] for f in EBF_EXAMPLES.fields))
    return spark.createDataFrame(rows, EBF_EXAMPLES)


def test_ebf_examples_suite(spark, cfg):
    good = run(spark, ebf_df(spark), "ebf_examples", cfg, expected_rows=8)
    assert good.passed, good.critical_failures
    t0 = int(dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    # A segment from a window that ends after the impression (leakage), a label of 2, a 17-long ad sequence
    # (seq_len.ad is 16 in conf/local.yaml) and one example too many for the expected count.
    bad_df = ebf_df(spark, 9, {1: {"segment_window_end_us": t0 + 5}, 2: {"label": 2}, 3: {"ad_len": 17}})
    bad = run(spark, bad_df, "ebf_examples", cfg, expected_rows=8)
    assert critical_failed(bad) == {"segment_window_before_impression", "label_binary", "len_in_range:ad",
                                    "row_count_reconciles"}


def test_raw_suite_warns_on_noise_but_blocks_on_contract(spark, cfg):
    rows = ad_rows(20)
    rows[0]["event_id"] = rows[1]["event_id"] = None  # 2 of 20 = 10% null keys, over the 5% allowed: a warning
    raw = spark.createDataFrame([tuple(r[f.name] for f in AD_IMPRESSIONS.fields) for r in rows], AD_IMPRESSIONS)
    raw = raw.withColumn("_reason", F.lit(None).cast("string"))  # read_raw_partition's extra columns are allowed
    result = run(spark, raw, "raw_ad_impressions", cfg)
    assert result.passed
    assert {c.expectation for c in result.warnings} == {"not_null:event_id"}
    missing = run(spark, raw.drop("dwell_ms"), "raw_ad_impressions", cfg)
    assert "columns" in critical_failed(missing)


def test_every_suite_builds_valid_gx_expectations(cfg):
    """Each suite's kwargs are accepted by its GX class (no Spark needed), in both segmentation families."""
    multi = dataclasses.replace(cfg, segmentation=dataclasses.replace(cfg.segmentation, epsilon_mode="multi_level"))
    g = _gx()
    for c in (cfg, multi):
        for table in SUITE_SCHEMAS:
            exps = suite(table, suite_settings(c), DS)
            assert exps, table
            for e in exps:
                _to_gx(g, e)
    assert next(e for e in suite("user_segments", suite_settings(multi), DS) if e.name == "segment_allowed").kwargs["value_set"] == [0, 1, 2]


# ---- recording and write-audit-publish ------------------------------------------------------------------

def test_results_recorded_and_docs_rendered(spark, cfg, tmp_path):
    c = with_docs(cfg, tmp_path / "docs")
    c = dataclasses.replace(c, paths=dataclasses.replace(c.paths, lake_root=str(tmp_path / "lake")))
    rows = broken(lambda r: r[3].update(event_id="e0"))
    result = run(spark, ad_df(spark, rows), "clean_ad_impressions", c, run_id="run-recorded", record=True)
    stored = spark.read.format("delta").load(table_path(c.paths.lake_root, "quality_results"))
    got = stored.where(F.col("run_id") == "run-recorded").collect()
    assert len(got) == len(result.checks) > 20
    assert {r["ds"] for r in got} == {DS} and {r["table"] for r in got} == {"clean_ad_impressions"}
    dup = [r for r in got if r["expectation"] == "unique:event_id"]
    assert len(dup) == 1 and dup[0]["success"] is False and dup[0]["severity"] == "critical"
    assert dup[0]["observed"].startswith("2 of 6 rows unexpected")  # both copies of e0
    assert json.loads(dup[0]["details"])["gx_type"] == "expect_column_values_to_be_unique"
    assert sum(not r["success"] for r in got) == 1
    # Data Docs: a GX site per run (the table's suite, its audit checks, the failed ones again with
    # examples) and a top index of every run's gates.
    site = tmp_path / "docs" / DS / "run-recorded"
    assert result.docs_index == (site / "index.html").as_uri()
    pages = sorted(p.name for p in (site / "validations").rglob("*.html"))
    assert pages == ["dynamix_audit-clean_ad_impressions.audit.html", "dynamix_spark-clean_ad_impressions.failed.html",
                     "dynamix_spark-clean_ad_impressions.html"]
    top = (tmp_path / "docs" / "index.html").read_text()
    assert "run-recorded" in top and "FAILED" in top and "unique:event_id" in top


def test_failed_gate_keeps_published_version(spark, cfg, tmp_path):
    """The recommended pattern: stage (conform + persist), gate, publish_or_fail(overwrite_partition)."""
    c = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, lake_root=str(tmp_path / "lake")))
    path = table_path(c.paths.lake_root, "clean_ad_impressions")

    def audited_publish(df, run_id):
        staged = conform(df, CLEAN_AD).persist()
        try:
            result = gate(spark, staged, "clean_ad_impressions", DS, c, job="test", run_id=run_id, load_previous=False)
            return publish_or_fail(result, lambda: overwrite_partition(staged, path, DS, CLEAN_AD, {"run_id": run_id}))
        finally:
            staged.unpersist()

    v0 = audited_publish(ad_df(spark, ad_rows()), "run-good")
    assert v0 == 0
    with pytest.raises(QualityGateError) as e:
        audited_publish(ad_df(spark, broken(lambda r: r[1].update(dwell_ms=5_000_000))), "run-bad")
    msg = str(e.value)
    assert "clean_ad_impressions" in msg and "dwell_in_bounds" in msg and "1 of 6 rows unexpected" in msg
    assert "5000000" in msg
    assert table_version(spark, path) == 0
    assert spark.read.format("delta").load(path).agg(F.max("dwell_ms")).first()[0] == 6_000
    # The blocked run left its evidence.
    stored = spark.read.format("delta").load(table_path(c.paths.lake_root, "quality_results"))
    assert [r["expectation"] for r in stored.where((F.col("run_id") == "run-bad") & ~F.col("success")).collect()] \
        == ["dwell_in_bounds"]


@pytest.mark.parametrize("override, key", [
    ("quality.active_share_tolerance=1.5", "quality.active_share_tolerance"),
    ("quality.drift_row_count_tolerance=-1", "quality.drift_row_count_tolerance"),
    ("quality.drift_severity=fatal", "quality.drift_severity"),
    ("quality.no_such_key=1", "quality.no_such_key"),
])
def test_quality_config_is_validated(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "conf" / "local.yaml", [override])
    assert key in str(e.value)
