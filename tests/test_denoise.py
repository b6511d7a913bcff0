"""Denoising: hand-built bad input with statuses written out by hand, file-level errors naming the file,
and the reconciliation raw = clean + quarantined + counted drops on generated data."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from conftest import TEST_DATES
from dynamix_spark.config import DenoiseConfig
from dynamix_spark.denoise import classify
from dynamix_spark.raw_io import RawInputError, read_raw_partition
from rawdata import raw_row_count

DS = "2026-11-02"
T0 = dt.datetime(2026, 11, 2, 10, 0, 0)


def _ad(event_id, user_id=1, ts=T0, dwell=3000, ad_id=5, **extra):
    row = {"event_id": event_id, "user_id": user_id, "event_ts": ts, "ad_id": ad_id, "campaign_id": 1,
           "advertiser_id": 2, "category_id": 3, "semantic_ids": [1, 2], "surface": "feed", "media_type": "image",
           "position": 1, "device_type": "ios", "dwell_ms": dwell}
    row.update(extra)
    return row


AD_TYPES = pa.schema([("event_id", pa.string()), ("user_id", pa.int64()), ("event_ts", pa.timestamp("us")),
                      ("ad_id", pa.int64()), ("campaign_id", pa.int64()), ("advertiser_id", pa.int64()),
                      ("category_id", pa.int64()), ("semantic_ids", pa.list_(pa.int64())), ("surface", pa.string()),
                      ("media_type", pa.string()), ("position", pa.int32()), ("device_type", pa.string()),
                      ("dwell_ms", pa.int64())])


def _write(path: Path, rows, schema):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _statuses(spark, root, cfg=DenoiseConfig()):
    df = classify(read_raw_partition(spark, str(root), "ad_impressions", DS), "ad_impressions", DS, cfg)
    return sorted(((r["event_id"], r["_status"]) for r in df.select("event_id", "_status").collect()),
                  key=lambda x: (x[0] is None, x[0] or "", x[1]))


def test_hand_built_statuses(spark, tmp_path):
    part = tmp_path / "ad_impressions" / f"ds={DS}"
    rows = [
        _ad("ok"),
        _ad("null-user", user_id=None),
        _ad(None),  # null event_id
        _ad("no-ts", ts=None),
        _ad("neg", dwell=-5),
        _ad("null-dwell", dwell=None),
        _ad("zero", dwell=0),  # a valid row, but not an impression (< 250 ms)
        _ad("short", dwell=249),
        _ad("edge-min", dwell=250),  # kept: the bound is inclusive
        _ad("edge-max", dwell=600_000),
        _ad("long", dwell=600_001),
        _ad("dup"), _ad("dup"),  # exact copies: one kept, one counted drop
        _ad("conflict", dwell=1000), _ad("conflict", ts=T0 + dt.timedelta(seconds=5), dwell=9000),
        _ad("late-ok", ts=dt.datetime(2026, 11, 3, 0, 30)),  # inside the 1 h tolerance
        _ad("too-late", ts=dt.datetime(2026, 11, 3, 1, 0)),  # exactly at the tolerance bound: outside
        _ad("future", ts=dt.datetime(2027, 1, 1)),
        _ad("unicode-ok", surface="flux-é-日本"),
    ]
    _write(part / "part-0.parquet", rows, AD_TYPES)
    # A second file with a different schema: user_id as string (one unparsable) and an extra column.
    str_schema = pa.schema([f if f.name != "user_id" else pa.field("user_id", pa.string()) for f in AD_TYPES]
                           + [pa.field("debug_note", pa.string())])
    _write(part / "part-1.parquet", [_ad("str-ok", user_id="42", debug_note="x"),
                                     _ad("str-bad", user_id="forty-two", debug_note="y")], str_schema)
    got = _statuses(spark, tmp_path)
    expected = sorted([
        ("ok", "clean"), ("null-user", "q:null_key:user_id"), (None, "q:null_key:event_id"),
        ("no-ts", "q:null_key:event_ts"), ("neg", "q:invalid_dwell"), ("null-dwell", "q:invalid_dwell"),
        ("zero", "drop:dwell_below_min"), ("short", "drop:dwell_below_min"), ("edge-min", "clean"),
        ("edge-max", "clean"), ("long", "drop:dwell_above_max"), ("dup", "clean"), ("dup", "drop:duplicate"),
        ("conflict", "clean"), ("conflict", "q:duplicate_conflict"), ("late-ok", "clean"),
        ("too-late", "q:ts_outside_partition"), ("future", "q:ts_outside_partition"), ("unicode-ok", "clean"),
        ("str-ok", "clean"), ("str-bad", "q:unparsable:user_id"),
    ], key=lambda x: (x[0] is None, x[0] or "", x[1]))
    assert got == expected


def test_conflicting_duplicate_keeps_earliest_and_quarantines_original(spark, tmp_path):
    from dynamix_spark.denoise import quarantine_rows

    part = tmp_path / "ad_impressions" / f"ds={DS}"
    _write(part / "a.parquet", [_ad("c", ts=T0 + dt.timedelta(seconds=5), dwell=9000), _ad("c", dwell=1000)], AD_TYPES)
    df = classify(read_raw_partition(spark, str(tmp_path), "ad_impressions", DS), "ad_impressions", DS, DenoiseConfig())
    kept = df.where("_status = 'clean'").select("dwell_ms").collect()
    assert [r[0] for r in kept] == [1000]
    q = quarantine_rows(df, "ad_impressions", DS, "run-1").collect()
    assert len(q) == 1 and q[0]["reason"] == "duplicate_conflict"
    assert json.loads(q[0]["original_row"])["dwell_ms"] == 9000
    assert q[0]["source_file"].endswith("a.parquet")


def test_missing_column_names_file_and_column(spark, tmp_path):
    part = tmp_path / "ad_impressions" / f"ds={DS}"
    schema = pa.schema([f for f in AD_TYPES if f.name != "dwell_ms"])
    row = {k: v for k, v in _ad("x").items() if k != "dwell_ms"}
    _write(part / "no-dwell.parquet", [row], schema)
    with pytest.raises(RawInputError, match=r"no-dwell\.parquet.*dwell_ms"):
        read_raw_partition(spark, str(tmp_path), "ad_impressions", DS)


def test_corrupt_file_names_file(spark, tmp_path):
    part = tmp_path / "ad_impressions" / f"ds={DS}"
    _write(part / "good.parquet", [_ad("x")], AD_TYPES)
    (part / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    with pytest.raises(RawInputError, match=r"broken\.parquet"):
        read_raw_partition(spark, str(tmp_path), "ad_impressions", DS)


def test_missing_partition_is_an_error_and_empty_file_is_skipped(spark, tmp_path):
    with pytest.raises(RawInputError, match="missing raw input"):
        read_raw_partition(spark, str(tmp_path), "ad_impressions", DS)
    part = tmp_path / "ad_impressions" / f"ds={DS}"
    _write(part / "good.parquet", [_ad("x")], AD_TYPES)
    (part / "empty.parquet").write_bytes(b"")
    assert read_raw_partition(spark, str(tmp_path), "ad_impressions", DS).count() == 1


def test_dwell_upper_modes(spark, tmp_path):
    part = tmp_path / "ad_impressions" / f"ds={DS}"
    # user 1: 30 dwells around 1 s and one of 60 s; user 2: 5 events (below user_min_events)
    rows = [_ad(f"u1-{i}", user_id=1, dwell=1000 + 10 * i) for i in range(30)] + [_ad("u1-big", user_id=1, dwell=60_000)]
    rows += [_ad(f"u2-{i}", user_id=2, dwell=60_000) for i in range(5)]
    _write(part / "a.parquet", rows, AD_TYPES)
    robust = dict(_statuses(spark, tmp_path, DenoiseConfig(upper_mode="user_robust", user_min_events=20)))
    assert robust["u1-big"] == "drop:dwell_above_max"  # 60x the user's median
    assert robust["u1-0"] == "clean" and robust["u2-0"] == "clean"  # user 2 falls back to 10 min
    fixed = dict(_statuses(spark, tmp_path, DenoiseConfig()))
    assert fixed["u1-big"] == "clean"


def test_reconciliation_on_generated_data(spark, tiny_cfg, tiny_pipeline):
    """raw rows (counted from the Parquet footers) = clean + quarantined + counted drops, per source and ds."""
    lake = tiny_cfg.paths.lake_root
    q = spark.read.format("delta").load(f"{lake}/quarantine")
    metrics = spark.read.format("delta").load(f"{lake}/run_metrics").where("job = 'denoise'")
    from schemas.raw import RAW_SOURCES

    seen_reasons = set()
    for ds in TEST_DATES:
        for src in RAW_SOURCES:
            raw = raw_row_count(tiny_cfg.paths.raw_root, src, ds)
            clean = spark.read.format("delta").load(f"{lake}/clean_{src}").where(F.col("ds") == ds).count()
            quarantined = q.where((F.col("ds") == ds) & (F.col("source") == src)).count()
            m = metrics.where((F.col("ds") == ds) & (F.col("source") == src)).orderBy(F.col("ended_at").desc()).first()
            drops = sum(m["drops"].values())
            assert raw == clean + quarantined + drops, (src, ds, raw, clean, quarantined, m["drops"])
            assert m["rows_in"] == raw and m["rows_out"] == clean and m["rows_quarantined"] == quarantined
            seen_reasons |= set(m["drops"]) | set(m["quarantined"])
            # nothing dropped silently: every clean row is valid and unique
            c = spark.read.format("delta").load(f"{lake}/clean_{src}").where(F.col("ds") == ds)
            assert c.select("event_id").distinct().count() == clean
    assert {"duplicate", "dwell_below_min", "dwell_above_max", "null_key:user_id", "invalid_dwell",
            "ts_outside_partition"} <= seen_reasons


def test_rerun_replaces_exactly_one_day(spark, tiny_cfg, tiny_pipeline):
    from jobs import denoise

    lake = tiny_cfg.paths.lake_root
    path = f"{lake}/clean_ad_impressions"
    before = spark.read.format("delta").load(path)
    snapshot = {ds: sorted(r[0] for r in before.where(F.col("ds") == ds).select("event_id").collect())
                for ds in TEST_DATES}
    denoise.run(spark, tiny_cfg, TEST_DATES[0])
    after = spark.read.format("delta").load(path)
    for ds in TEST_DATES:
        assert sorted(r[0] for r in after.where(F.col("ds") == ds).select("event_id").collect()) == snapshot[ds]
    hist = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy(F.col("version").desc()).first()
    assert hist["operation"] == "WRITE"
    info = json.loads(hist["userMetadata"])
    assert info["job"] == "denoise" and info["ds"] == TEST_DATES[0]
    assert "ds = '" + TEST_DATES[0] + "'" in hist["operationParameters"]["predicate"]
