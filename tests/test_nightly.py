"""The nightly entry point: two dates, a re-run of the first that changes no table's content and replaces only
that date's partitions, and a missing or incomplete raw day that fails before any table is written."""
from __future__ import annotations

import shutil

import pytest

from conftest import ROOT, TEST_DATES, lake_config
from dynamix_spark.raw_io import RawInputError
from jobs import nightly
from training.delta_snapshot import latest_version

D1, D2, D3 = TEST_DATES
# The tables the nightly run writes per ds (run_metrics and quality_results are append-only history).
DATA_TABLES = ("clean_ad_impressions", "clean_conversions", "clean_organic_impressions", "clean_page_impressions",
               "quarantine", "user_window_stats", "user_segments", "ebf_examples")
RUN_COLUMNS = {"run_id"}  # differ between runs by design


pytestmark = pytest.mark.usefixtures("few_delta_tasks")


@pytest.fixture(scope="module")
def lake(spark, tiny_cfg, tiny_raw, tmp_path_factory):
    """A private copy of the tiny raw data and an empty lake; the nightly run over D1..D2, once."""
    root = tmp_path_factory.mktemp("nightly")
    shutil.copytree(tiny_cfg.paths.raw_root, root / "raw")
    cfg = lake_config(root, "paths.database=nightly_test", "ebf.build_policies=[baseline, remove_passive]",
                      f"generator.start_date={D1}")
    report = nightly.run(spark, cfg, [D1, D2])
    yield cfg, report
    spark.sql("DROP DATABASE IF EXISTS nightly_test CASCADE")


def _content(spark, cfg) -> dict[str, list[tuple]]:
    """Every data table's rows (all columns but the run id), sorted: the row multiset."""
    out = {}
    for t in DATA_TABLES:
        df = spark.read.format("delta").load(f"{cfg.paths.lake_root}/{t}")
        cols = [c for c in df.columns if c not in RUN_COLUMNS]
        out[t] = sorted((tuple(_norm(v) for v in r) for r in df.select(*cols).collect()), key=repr)
    return out


def _norm(v):
    """Doubles to 9 decimals: a sum's last bits may depend on the order Spark's tasks add in."""
    return round(v, 9) if isinstance(v, float) else v


def _versions(cfg) -> dict[str, int]:
    lake_root = cfg.paths.lake_root
    return {t: latest_version(f"{lake_root}/{t}") for t in (*DATA_TABLES, "run_metrics")}


def test_two_days_then_a_rerun_of_the_first_changes_no_content(spark, lake):
    cfg, report = lake
    assert sorted(report["build_ebf"]) == [D1, D2] and "maintenance" in report
    before = _content(spark, cfg)
    for t in DATA_TABLES:  # every table has rows for both days (written by the run, not left empty)
        days = {r[0] for r in spark.read.format("delta").load(f"{cfg.paths.lake_root}/{t}")
                .select("ds").distinct().collect()}
        assert days == {D1, D2}, t
    v_before = _versions(cfg)

    nightly.run(spark, cfg, [D1])

    assert _content(spark, cfg) == before
    v_after = _versions(cfg)
    assert all(v_after[t] > v_before[t] for t in DATA_TABLES)  # the day was really written again
    # ... and only D1's partitions were replaced: every data write of the re-run names D1 and never D2.
    for t in ("ebf_examples", "user_window_stats", "clean_ad_impressions"):
        hist = spark.sql(f"DESCRIBE HISTORY delta.`{cfg.paths.lake_root}/{t}`").where(
            f"version > {v_before[t]} AND operation = 'WRITE'").collect()
        assert hist, t
        for h in hist:
            predicate = h["operationParameters"]["predicate"]
            assert D1 in predicate and D2 not in predicate, (t, predicate)
    # The catalog the run registered answers by name.
    n = spark.sql(f"SELECT count(*) FROM nightly_test.ebf_examples WHERE ds = '{D2}'").first()[0]
    assert n == sum(1 for r in before["ebf_examples"] if D2 in r)


def test_missing_day_fails_before_writing_anything(spark, lake):
    cfg, _ = lake
    v_before = _versions(cfg)
    missing = "2026-11-04"  # never generated
    with pytest.raises(RawInputError, match=f"missing raw input: .*ds={missing}"):
        nightly.run(spark, cfg, [D3, missing])  # D3 is fine: the range fails as a whole, D3 is not written
    v_after = _versions(cfg)
    assert {t: v_after[t] for t in DATA_TABLES} == {t: v_before[t] for t in DATA_TABLES}
    assert v_after["run_metrics"] == v_before["run_metrics"] + 1  # the failure is recorded ...
    failed = spark.read.format("delta").load(f"{cfg.paths.lake_root}/run_metrics").where(
        "job = 'nightly' AND status = 'failed'").collect()
    assert sorted(r["ds"] for r in failed) == [D3, missing]  # ... once per day of the run
    assert all('"step": "check_inputs"' in r["params"] and missing in r["params"] for r in failed)


def test_incomplete_day_without_its_marker_fails_before_writing(spark, lake):
    cfg, _ = lake
    marker = f"{cfg.paths.raw_root}/conversions/ds={D3}/_SUCCESS"
    shutil.move(marker, marker + ".away")  # the landing job has not finished conversions for D3
    try:
        v_before = _versions(cfg)
        with pytest.raises(RawInputError, match=f"incomplete raw input: .*conversions/ds={D3} has no _SUCCESS"):
            nightly.run(spark, cfg, [D3])
        assert {t: v for t, v in _versions(cfg).items() if t in DATA_TABLES} == \
               {t: v for t, v in v_before.items() if t in DATA_TABLES}
    finally:
        shutil.move(marker + ".away", marker)


def test_nightly_cli_exits_1_with_one_line_for_a_missing_day(tmp_path):
    """The entry point as spark-submit runs it: exit status 1 and the reason, not a stack trace."""
    import subprocess

    r = subprocess.run([str(ROOT / "scripts" / "spark.sh"), "submit", "--master", "local[1]",
                        str(ROOT / "jobs" / "nightly.py"), "--config", str(ROOT / "conf" / "local.yaml"),
                        "--ds", "2026-11-04", "--set", f"paths.raw_root={tmp_path}/raw",
                        "--set", f"paths.lake_root={tmp_path}/lake", "--set", "spark.conf={}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr  # spark-submit's PythonRunner passes the driver's stderr on to its stdout
    assert r.returncode == 1, out[-3000:]
    assert f"failed: missing raw input: {tmp_path}/raw/ad_impressions/ds=2026-11-04 does not exist" in out
    assert "Traceback" not in out
