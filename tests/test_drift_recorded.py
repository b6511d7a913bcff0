"""Drift against the previous day's recorded statistics (issue 17, gates that cost little).

A gate's drift checks compare today's statistics with the ones the gate of the run that published the previous
day recorded in ``quality_results`` (found through the run ledger), instead of scanning that day's partition
again; where no published run recorded them (a lake from before, a day written outside the jobs) the partition
is read as before. The record is read from ``quality_results``, or, for a run this process recorded itself (the
day before in a backfill), from what it appended (``recorded_drift_rows``): both are tested (``source``, the
in-process record cleared as for a run of another process). The expected values are counted from the rows each
test writes (row counts, and the mean of ln(dwell_ms) computed with ``math.log``), never taken from the code under
test.
"""
from __future__ import annotations

import datetime as dt
import math

import pytest

from conftest import lake_config
from dynamix_spark.delta_io import RunMetrics, overwrite_partition, table_path
from dynamix_spark.quality import gate
from dynamix_spark.quality import results as quality_results
from dynamix_spark.staged_write import StagedWrite
from schemas.tables import CLEAN_TABLES

CLEAN_AD = CLEAN_TABLES["clean_ad_impressions"]
D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"
JOB = "denoise"


@pytest.fixture()
def cfg(tmp_path):
    return lake_config(tmp_path, "quality.docs_dir=''")


def _dwells(n: int, scale: int = 1_000) -> list[int]:
    return [scale * (i + 1) for i in range(n)]


def _ads(spark, ds: str, dwells: list[int]):
    base = dt.datetime.fromisoformat(ds) + dt.timedelta(hours=10)
    rows = [dict(event_id=f"{ds}-e{i}", user_id=100 + i % 2, event_ts=base + dt.timedelta(minutes=7 * i), ad_id=10 + i,
                 campaign_id=3, advertiser_id=2, category_id=5, semantic_ids=[1, 2], surface="feed",
                 media_type="video", position=i, device_type="ios", dwell_ms=d, ds=ds) for i, d in enumerate(dwells)]
    return spark.createDataFrame([tuple(r[f.name] for f in CLEAN_AD.fields) for r in rows], CLEAN_AD)


def _publish(spark, cfg, ds: str, dwells: list[int], run_id: str) -> None:
    """One run of ``JOB`` for ``ds`` through the staged write: gate (drift on), commit, ledger row."""
    with StagedWrite(spark, cfg, job=JOB, run_id=run_id, ds=ds, checkpoint=True) as stage:
        stage.add("clean_ad_impressions", _ads(spark, ds, dwells), CLEAN_AD)
        stage.commit({"run_id": run_id})
        stage.record_run([RunMetrics(run_id=run_id, job=JOB, ds=ds, source="ad_impressions")])


@pytest.fixture(params=["in_process", "table"])
def source(request):
    """Where the previous day's record is read from: what this process appended, or the table (as another
    process would)."""
    return request.param


def _forget(source: str, cfg, run_id: str, ds: str) -> None:
    if source == "table":
        quality_results._RECORDED_DRIFT.clear()
    else:  # the run's drift rows are held in this process: the gate reads them there
        assert quality_results.recorded_drift_rows(cfg.paths.lake_root, run_id, ds)


def _drift(spark, cfg, ds: str, dwells: list[int], run_id: str):
    result = gate(spark, _ads(spark, ds, dwells), "clean_ad_impressions", ds, cfg, job=JOB, run_id=run_id,
                  record=False)
    return result.check("drift:row_count").details["inputs"], result.check("drift:mean_log_dwell").details["inputs"]


def _mean_log(dwells: list[int]) -> float:
    return sum(math.log(d) for d in dwells) / len(dwells)


def test_drift_reads_the_published_runs_record_not_the_partition(spark, cfg, source):
    _publish(spark, cfg, D1, _dwells(4), "run-d1")
    _forget(source, cfg, "run-d1", D1)
    # A later run of D1 replaced its partition (6 rows, other dwells) and was killed before its ledger row: the
    # published day is still run-d1's 4 rows, and the partition at latest is not what drift compares with.
    overwrite_partition(_ads(spark, D1, _dwells(6, 3_000)), table_path(cfg.paths.lake_root, "clean_ad_impressions"),
                        D1, CLEAN_AD, {"run_id": "run-d1-killed"})
    rows, dwell = _drift(spark, cfg, D2, _dwells(5), "run-d2-check")
    assert rows["previous"] == 4 and rows["today"] == 5
    assert rows["previous_from"] == "recorded by run run-d1"
    assert dwell["previous"] == pytest.approx(_mean_log(_dwells(4)), abs=1e-9)
    assert dwell["today"] == pytest.approx(_mean_log(_dwells(5)), abs=1e-9)


def test_drift_reads_a_record_made_by_a_checked_drift(spark, cfg, source):
    # Day 2's gate ran its drift checks (rows drift:<statistic>): day 3 reads day 2's values from them.
    _publish(spark, cfg, D1, _dwells(4), "run-d1")
    _publish(spark, cfg, D2, _dwells(7, 2_000), "run-d2")
    _forget(source, cfg, "run-d2", D2)
    rows, dwell = _drift(spark, cfg, D3, _dwells(5), "run-d3-check")
    assert rows["previous"] == 7 and rows["previous_from"] == "recorded by run run-d2"
    assert dwell["previous"] == pytest.approx(_mean_log(_dwells(7, 2_000)), abs=1e-9)


def test_drift_reads_the_partition_where_no_run_recorded_it(spark, cfg):
    # Day 1 written outside the jobs (no ledger row, no gate): the partition as it is.
    overwrite_partition(_ads(spark, D1, _dwells(3)), table_path(cfg.paths.lake_root, "clean_ad_impressions"), D1,
                        CLEAN_AD, {"run_id": "by-hand"})
    rows, dwell = _drift(spark, cfg, D2, _dwells(5), "run-d2-check")
    assert rows["previous"] == 3 and rows["previous_from"] == "partition"
    assert dwell["previous"] == pytest.approx(_mean_log(_dwells(3)), abs=1e-9)
