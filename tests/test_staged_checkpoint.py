"""The staged write's local checkpoints and its one Data Docs build per run (issue 17, gates that cost little).

- ``StagedWrite(checkpoint=True)`` stores each staged DataFrame at once (its plan is then a scan of the stored
  rows), the published partition holds exactly the staged rows, and closing the stage drops every stored block;
- the run's Data Docs are one site with a page per gate (and per audit), rendered at the commit, also when a
  gate blocks it; the build's seconds are in ``run_metrics.params.docs_seconds``.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from conftest import lake_config
from dynamix_spark.delta_io import RunMetrics, table_path
from dynamix_spark.quality import QualityGateError
from dynamix_spark.staged_write import StagedWrite
from schemas.tables import CLEAN_TABLES, QUARANTINE

DS = "2026-11-02"
CLEAN_AD = CLEAN_TABLES["clean_ad_impressions"]


def _ads(spark, n: int):
    base = dt.datetime(2026, 11, 2, 10, 0)
    rows = [dict(event_id=f"e{i}", user_id=100 + i % 2, event_ts=base + dt.timedelta(minutes=7 * i), ad_id=10 + i,
                 campaign_id=3, advertiser_id=2, category_id=5, semantic_ids=[1, 2], surface="feed",
                 media_type="video", position=i, device_type="ios", dwell_ms=1_000 * (i + 1), ds=DS) for i in range(n)]
    return spark.createDataFrame([tuple(r[f.name] for f in CLEAN_AD.fields) for r in rows], CLEAN_AD)


def _quarantine(spark, reason: str):
    return spark.createDataFrame([("ad_impressions", reason, "f.parquet", "{}", "r", DS)], QUARANTINE)


def _stored_rdds(spark) -> set[int]:
    return {i.id() for i in spark.sparkContext._jsc.sc().getRDDStorageInfo()}


def test_checkpointed_stage_publishes_its_rows_and_releases_them(spark, tmp_path):
    cfg = lake_config(tmp_path, "quality.docs_dir=''")
    with StagedWrite(spark, cfg, job="test", run_id="run-ckpt", ds=DS, checkpoint=True) as stage:
        staged = stage.add("clean_ad_impressions", _ads(spark, 5), CLEAN_AD, load_previous=False)
        # stored at once, and read from there: the plan is a scan of the stored rows, not the lineage
        plan = staged._jdf.queryExecution().analyzed()
        assert plan.getClass().getSimpleName() == "LogicalRDD"
        rdd = plan.rdd().id()
        assert rdd in _stored_rdds(spark)
        stage.commit({"run_id": "run-ckpt"})
    assert rdd not in _stored_rdds(spark)  # closing the stage dropped the blocks it stored
    written = spark.read.format("delta").load(table_path(cfg.paths.lake_root, "clean_ad_impressions"))
    assert sorted(r["event_id"] for r in written.collect()) == [f"e{i}" for i in range(5)]


def test_one_docs_site_per_run_rendered_at_commit(spark, tmp_path):
    cfg = lake_config(tmp_path)
    docs = tmp_path / "quality_docs"
    with StagedWrite(spark, cfg, job="test", run_id="run-docs", ds=DS) as stage:
        stage.add("clean_ad_impressions", _ads(spark, 4), CLEAN_AD, load_previous=False)
        stage.add("quarantine", _quarantine(spark, "invalid_dwell"), QUARANTINE, load_previous=False)
        assert not (docs / DS / "run-docs").exists()  # nothing rendered by the gates themselves
        stage.commit({"run_id": "run-docs"})
        stage.record_run([RunMetrics(run_id="run-docs", job="test", ds=DS)])
    site = docs / DS / "run-docs"
    pages = sorted(p.name for p in (site / "validations").rglob("*.html"))
    assert pages == ["dynamix_audit-clean_ad_impressions.audit.html", "dynamix_spark-clean_ad_impressions.html",
                     "dynamix_spark-quarantine.html"]
    assert {r.docs_index for r in stage.results} == {(site / "index.html").as_uri()}
    assert sorted(p.name for p in (site / "gates").iterdir()) == ["clean_ad_impressions.json", "quarantine.json"]
    metrics = spark.read.format("delta").load(table_path(cfg.paths.lake_root, "run_metrics")) \
        .where(F.col("run_id") == "run-docs").collect()
    params = json.loads(metrics[0]["params"])
    assert params["docs_seconds"] > 0 and params["gate_seconds"] > 0


def test_a_blocked_commit_still_renders_its_docs(spark, tmp_path):
    cfg = lake_config(tmp_path)
    with pytest.raises(QualityGateError, match="reason_known"):
        with StagedWrite(spark, cfg, job="test", run_id="run-blocked", ds=DS) as stage:
            stage.add("quarantine", _quarantine(spark, "no_such_reason"), QUARANTINE, load_previous=False)
            stage.commit({"run_id": "run-blocked"})
    top = (tmp_path / "quality_docs" / "index.html").read_text()
    assert "run-blocked" in top and "FAILED" in top and "reason_known" in top
    assert (tmp_path / "quality_docs" / DS / "run-blocked" / "validations").is_dir()
