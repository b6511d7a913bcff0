"""The staged write (``dynamix_spark.staged_write``): every table or none, the order tables were added, a table
that is only written when it exists; and each gate's seconds in ``quality_results`` and in ``run_metrics``."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from conftest import ROOT
from dynamix_spark.config import load_config
from dynamix_spark.delta_io import table_path, table_version
from dynamix_spark.quality import CheckResult, GateResult, QualityGateError, record_results
from dynamix_spark.staged_write import StagedWrite
from schemas.expectations import QUALITY_RESULTS
from schemas.tables import CLEAN_TABLES, QUARANTINE

DS = "2026-11-02"
CLEAN_AD = CLEAN_TABLES["clean_ad_impressions"]


@pytest.fixture()
def cfg(tmp_path):
    return load_config(ROOT / "conf" / "local.yaml", [
        f"paths.raw_root={tmp_path}/raw", f"paths.lake_root={tmp_path}/lake", "quality.docs_dir=''", "spark.conf={}"])


def _ads(spark):
    base = dt.datetime(2026, 11, 2, 10, 0)
    rows = [dict(event_id=f"e{i}", user_id=100 + i % 2, event_ts=base + dt.timedelta(minutes=7 * i), ad_id=10 + i,
                 campaign_id=3, advertiser_id=2, category_id=5, semantic_ids=[1, 2], surface="feed",
                 media_type="video", position=i, device_type="ios", dwell_ms=1_000 * (i + 1), ds=DS) for i in range(4)]
    return spark.createDataFrame([tuple(r[f.name] for f in CLEAN_AD.fields) for r in rows], CLEAN_AD)


def _quarantine(spark, reason: str):
    return spark.createDataFrame([("ad_impressions", reason, "f.parquet", "{}", "r", DS)], QUARANTINE)


def _stage_two(spark, cfg, run_id: str, reason: str) -> dict[str, int]:
    with StagedWrite(spark, cfg, job="test", run_id=run_id, ds=DS) as stage:
        stage.add("clean_ad_impressions", _ads(spark), CLEAN_AD, load_previous=False)
        stage.add("quarantine", _quarantine(spark, reason), QUARANTINE, load_previous=False)
        # never created before: not written, not in the versions
        stage.add("clean_page_impressions", spark.createDataFrame([], CLEAN_TABLES["clean_page_impressions"]),
                  CLEAN_TABLES["clean_page_impressions"], create=False, load_previous=False)
        return stage.commit({"run_id": run_id})


def test_every_table_or_none(spark, cfg):
    lake = cfg.paths.lake_root
    versions = _stage_two(spark, cfg, "run-good", "invalid_dwell")
    assert list(versions) == ["clean_ad_impressions", "quarantine"] and set(versions.values()) == {0}
    assert not (Path(lake) / "clean_page_impressions").exists()
    # One critical failure in the second table: neither table gets a version, the evidence is recorded.
    with pytest.raises(QualityGateError, match="quarantine ds=2026-11-02: expectation reason_known"):
        _stage_two(spark, cfg, "run-bad", "no_such_reason")
    assert table_version(spark, table_path(lake, "clean_ad_impressions")) == 0
    assert table_version(spark, table_path(lake, "quarantine")) == 0
    stored = spark.read.format("delta").load(table_path(lake, "quality_results")).where(F.col("run_id") == "run-bad")
    failed = stored.where(~F.col("success")).collect()
    assert sorted((r["table"], r["expectation"], r["severity"]) for r in failed) == [
        ("clean_page_impressions", "row_count_positive", "warning"), ("quarantine", "reason_known", "critical")]
    assert {r["table"] for r in stored.collect()} == {"clean_ad_impressions", "quarantine", "clean_page_impressions"}


def test_gate_seconds_added_to_a_table_written_without_them(spark, cfg):
    """A ``quality_results`` written before the column existed takes the new rows; its old rows read null."""
    path = table_path(cfg.paths.lake_root, "quality_results")
    old = StructType([f for f in QUALITY_RESULTS.fields if f.name != "gate_seconds"])
    at = dt.datetime(2026, 11, 2, 3, 0)
    spark.createDataFrame([("old-run", "test", "quarantine", DS, "columns", "critical", True, "ok", "{}", at)], old) \
        .write.format("delta").partitionBy("ds").save(path)
    check = CheckResult("columns", "critical", True, "ok", {})
    record_results(spark, cfg.paths.lake_root, [GateResult("new-run", "test", "quarantine", DS, (check,), at, 1.25)])
    got = {r["run_id"]: r["gate_seconds"] for r in spark.read.format("delta").load(path).collect()}
    assert got == {"old-run": None, "new-run": 1.25}


# Gates per run of each job (denoise: 4 raw, 4 clean, quarantine), counted by hand.
GATES_PER_RUN = {"denoise": 9, "user_window_stats": 2, "build_ebf": 1}


def test_gate_seconds_recorded_per_gate_and_summed_per_run(spark, tiny_cfg, tiny_pipeline):
    lake = tiny_cfg.paths.lake_root
    qr = spark.read.format("delta").load(table_path(lake, "quality_results"))
    assert dict(qr.dtypes)["gate_seconds"] == "double"
    per_gate = qr.groupBy("run_id", "job", "table").agg(F.min("gate_seconds").alias("lo"),
                                                        F.max("gate_seconds").alias("hi")).collect()
    assert {r["job"] for r in per_gate} >= {"denoise", "user_window_stats"}
    # one value per gate, on each of its rows, and positive
    assert all(r["lo"] is not None and r["lo"] == r["hi"] > 0 for r in per_gate)
    runs = [m for m in spark.read.format("delta").load(table_path(lake, "run_metrics")).collect()
            if m["job"] in GATES_PER_RUN and m["status"] == "succeeded"]
    assert {m["job"] for m in runs} >= {"denoise", "user_window_stats"}
    for m in runs:
        gates = [r["lo"] for r in per_gate if r["run_id"] == m["run_id"]]
        assert len(gates) == GATES_PER_RUN[m["job"]]
        assert json.loads(m["params"])["gate_seconds"] == pytest.approx(sum(gates), abs=2e-3)


def test_no_table_of_a_failed_commit_is_created(spark, cfg):
    """The first run of a lake blocked by a gate creates no table (only the recorded evidence)."""
    with pytest.raises(QualityGateError):
        with StagedWrite(spark, cfg, job="test", run_id="run-first", ds=DS) as stage:
            stage.add("clean_ad_impressions", _ads(spark), CLEAN_AD, load_previous=False)
            stage.add("quarantine", _quarantine(spark, "bogus"), QUARANTINE, load_previous=False)
            stage.commit({"run_id": "run-first"})
    assert sorted(p.name for p in Path(cfg.paths.lake_root).iterdir()) == ["quality_results"]
