"""scripts/compare_lakes.py on two tiny hand-built lakes: equal tables pass, one duplicated row is a difference."""
from __future__ import annotations

import datetime as dt
import importlib.util
import sys

import pytest

from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("compare_lakes", ROOT / "scripts" / "compare_lakes.py")
compare_lakes = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = compare_lakes  # its dataclasses look their module up there
SPEC.loader.exec_module(compare_lakes)

T0 = dt.datetime(2026, 11, 2, 0, 0)
T1 = dt.datetime(2026, 11, 2, 6, 0)
# user_segments rows: (user_id, window_start, window_end, segment, epsilon, epsilon_mode, ds)
SEGMENTS = [
    (1, T0, T1, 1, 0.3, "fixed", "2026-11-02"),
    (2, T0, T1, 0, 0.3, "fixed", "2026-11-02"),
    (2, T0, T1, 0, 0.3, "fixed", "2026-11-03"),
]


def _write(spark, lake, table, rows, schema):
    (spark.createDataFrame(rows, schema).write.format("delta").mode("overwrite").partitionBy("ds")
     .save(f"{lake}/{table}"))


def _run_metrics_row(run_id: str, started: dt.datetime):
    return (run_id, "denoise", "2026-11-02", "ad_impressions", started, started + dt.timedelta(seconds=5), "ok",
            10, 8, 1, {"duplicate": 1}, {"null_key:user_id": 1}, None, None, {"clean_ad_impressions": 3}, "{}")


@pytest.fixture(scope="module")
def lakes(spark, tmp_path_factory):
    from schemas.tables import RUN_METRICS, USER_SEGMENTS

    root = tmp_path_factory.mktemp("lakes")
    a, b, c = str(root / "a"), str(root / "b"), str(root / "c")
    _write(spark, a, "user_segments", SEGMENTS, USER_SEGMENTS)
    _write(spark, b, "user_segments", list(reversed(SEGMENTS)), USER_SEGMENTS)  # another order: still equal
    _write(spark, c, "user_segments", SEGMENTS + [SEGMENTS[1]], USER_SEGMENTS)  # one row twice
    # run_metrics of two runs of the same day: their run ids and times differ, which is not a difference
    _write(spark, a, "run_metrics", [_run_metrics_row("denoise-a", T0)], RUN_METRICS)
    _write(spark, b, "run_metrics", [_run_metrics_row("denoise-b", T1)], RUN_METRICS)
    _write(spark, c, "run_metrics", [_run_metrics_row("denoise-c", T1)], RUN_METRICS)
    return a, b, c


def test_equal_lakes_compare_equal_and_exit_0(spark, lakes, capsys):
    a, b, _ = lakes
    by_table = {r.table: r for r in compare_lakes.compare_lakes(spark, a, b)}
    assert by_table["user_segments"].status == "equal"
    assert (by_table["user_segments"].rows_a, by_table["user_segments"].rows_b) == (3, 3)
    assert by_table["run_metrics"].status == "equal"
    assert set(by_table["run_metrics"].excluded) == {"run_id", "started_at", "ended_at", "delta_versions", "params"}
    assert by_table["ebf_examples"].status == "absent"  # in neither lake: not a difference
    assert compare_lakes.main([a, b], spark=spark) == 0
    assert "user_segments: equal" in capsys.readouterr().out


def test_one_duplicated_row_is_a_difference_and_exits_1(spark, lakes, capsys):
    a, _, c = lakes
    seg = compare_lakes.compare_table(spark, a, c, "user_segments")
    assert seg.status == "different"
    assert (seg.rows_a, seg.rows_b, seg.only_a, seg.only_b) == (3, 4, 0, 1)
    assert seg.only_by_ds == {"2026-11-02": (0, 1)}
    # the same row's other copy (ds 2026-11-03) keeps that day equal: restricted to it, the table is equal
    assert compare_lakes.compare_table(spark, a, c, "user_segments", days=["2026-11-03"]).status == "equal"
    assert compare_lakes.main([a, c], spark=spark) == 1
    out = capsys.readouterr().out
    assert "user_segments: DIFFERENT" in out and "run_metrics: equal" in out


def test_a_table_in_one_lake_only_is_a_difference(spark, lakes, tmp_path):
    a, _, _ = lakes
    r = compare_lakes.compare_table(spark, a, str(tmp_path), "user_segments")
    assert (r.status, r.note) == ("different", "only in lake A")
