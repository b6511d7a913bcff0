"""The gates' shared counts (issue 17, "Gates that cost little"): a count computed once serves every check that
needs it, and the checks keep failing on a single bad row.

- the row count GX computes for ``row_count_positive`` is the gate's :attr:`GateResult.row_count` and the
  audit's ``count(1)``: a table whose day statistics are only that count (a raw table, ``clean_conversions``,
  ``quarantine``) runs no audit aggregation of its own, and its ``drift:row_count`` still sees the true count;
- the reconciliation given as counts (denoise: the raw gate's row count, the classification's counts) fails on
  one row unaccounted for, as it does given DataFrames.

Expected values are counted by hand from the rows built here.
"""
from __future__ import annotations

import datetime as dt

import pytest

import dynamix_spark.quality.audit as audit
from conftest import lake_config
from dynamix_spark.quality import Reconciliation, gate
from schemas.raw import AD_IMPRESSIONS
from schemas.tables import CLEAN_TABLES

DS = "2026-11-02"
PREV = "2026-11-01"
CLEAN_CONV = CLEAN_TABLES["clean_conversions"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate_counts")
    return lake_config(root, "quality.docs_dir=''")


@pytest.fixture
def aggregations(monkeypatch):
    """The audit's own Spark aggregations, by table (``audit._stats`` calls)."""
    calls: list[str] = []
    real = audit._stats

    def counting(df, table, extra=None):
        calls.append(table)
        return real(df, table, extra)

    monkeypatch.setattr(audit, "_stats", counting)
    return calls


def conv_rows(n: int, ds: str = DS) -> list[dict]:
    base = dt.datetime.fromisoformat(ds) + dt.timedelta(hours=9)
    return [dict(event_id=f"c{i}", user_id=100 + i, event_ts=base + dt.timedelta(minutes=i), ad_id=10 + i,
                 conversion_type="purchase", ds=ds) for i in range(n)]


def conv_df(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in CLEAN_CONV.fields) for r in rows], CLEAN_CONV)


def ad_raw(spark, n: int):
    base = dt.datetime(2026, 11, 2, 10, 0)
    rows = [dict(event_id=f"e{i}", user_id=100 + i % 2, event_ts=base + dt.timedelta(minutes=7 * i), ad_id=10 + i,
                 campaign_id=3, advertiser_id=2, category_id=5, semantic_ids=[1, 2], surface="feed",
                 media_type="video", position=i, device_type="ios", dwell_ms=1_000 * (i + 1)) for i in range(n)]
    return spark.createDataFrame([tuple(r[f.name] for f in AD_IMPRESSIONS.fields) for r in rows], AD_IMPRESSIONS)


def run(spark, df, table, cfg, **kw):
    kw.setdefault("load_previous", False)
    return gate(spark, df, table, DS, cfg, job="test", run_id="test-run", record=False, **kw)


def test_raw_gate_counts_once_and_shares_the_count(spark, cfg, aggregations):
    result = run(spark, ad_raw(spark, 7), "raw_ad_impressions", cfg, previous=ad_raw(spark, 10))
    assert result.row_count == 7
    # drift:row_count: 7 today against 10 the day before, with today's count from GX's table.row_count
    drift = result.check("drift:row_count")
    assert drift.details["inputs"]["today"] == 7 and drift.details["inputs"]["previous"] == 10
    assert aggregations == ["raw_ad_impressions"]  # the previous partition's only: today's came from GX


def test_reconciliation_from_counts_fails_on_one_row(spark, cfg, aggregations):
    staged = conv_df(spark, conv_rows(5))
    ok = run(spark, staged, "clean_conversions", cfg,
             reconciliation=Reconciliation(raw=8, quarantined=2, drops={"duplicate": 1}))
    assert ok.passed, ok.critical_failures
    assert ok.check("reconciliation").observed.startswith("raw=8 vs clean=5 + quarantined=2 + drops=1 (diff 0)")
    # One staged row too many (a clean row that was also quarantined, say): 8 raw rows, 9 accounted for.
    extra = conv_df(spark, conv_rows(6))
    bad = run(spark, extra, "clean_conversions", cfg,
              reconciliation=Reconciliation(raw=8, quarantined=2, drops={"duplicate": 1}))
    assert {c.expectation for c in bad.critical_failures} == {"reconciliation"}
    assert "clean=6" in bad.check("reconciliation").observed and "diff -1" in bad.check("reconciliation").observed
    assert aggregations == []  # clean_conversions' day statistics are its row count: GX's


def test_single_bad_row_still_fails_without_the_audit_aggregation(spark, cfg, aggregations):
    rows = conv_rows(5)
    rows[3] = dict(rows[3], event_id=rows[1]["event_id"])  # one duplicated key
    result = run(spark, conv_df(spark, rows), "clean_conversions", cfg)
    assert {c.expectation for c in result.critical_failures} == {"unique:event_id"}
    assert result.row_count == 5
    assert aggregations == []
