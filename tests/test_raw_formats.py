"""Raw partitions written by other tools (issue 15, section 3): each physical type either reads as the values
written or fails naming the file and the column.

Files are written with pandas / pyarrow the way a Python team lands them; expected values are converted here
with plain Python / numpy (timestamps as epoch microseconds), never with the Spark code under test. Spark's
side is compared through ``unix_micros`` so the driver's local time zone plays no part."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from conftest import ROOT, tiny_overrides
from dynamix_spark.raw_io import NANOS_AS_LONG_CONF, RawInputError, read_raw_partition
from schemas.raw import AD_IMPRESSIONS

DS = "2026-11-02"
SRC = "ad_impressions"
CONTRACT = [f.name for f in AD_IMPRESSIONS.fields]

# Epoch nanoseconds, with sub-microsecond digits, one before 1970 (floor, not truncation toward zero, to the
# microsecond) and one 1 ns before midnight.
_DAY_NS = 1_793_577_600 * 10**9  # 2026-11-02T00:00:00Z
TS_NS = [_DAY_NS + 1_123_456_789, _DAY_NS + 45_000_500_000_999, _DAY_NS + 86_400 * 10**9 - 1, _DAY_NS, -1]


def _frame(n: int = len(TS_NS)) -> pd.DataFrame:
    """Ad impressions as pandas builds them: int64 everywhere, datetime64[ns] naive timestamps."""
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "user_id": np.arange(1, n + 1, dtype="int64") * 1_000_000_007,  # beyond the int32 range
        "event_ts": pd.to_datetime(np.array(TS_NS[:n], dtype="int64"), unit="ns"),
        "ad_id": np.arange(n, dtype="int64") + 10,
        "campaign_id": np.arange(n, dtype="int64") + 20,
        "advertiser_id": np.arange(n, dtype="int64") + 30,
        "category_id": np.arange(n, dtype="int64") + 40,
        "semantic_ids": [[i, i + 1, 2**40 + i] for i in range(n)],
        "surface": ["feed", "stories", "feed", "reels", "feed"][:n],
        "media_type": ["image", "video", "image", "video", "carousel"][:n],
        "position": np.arange(n, dtype="int64"),
        "device_type": ["ios", "android", "web", "ios", "ios"][:n],
        "dwell_ms": np.arange(n, dtype="int64") * 1000 + 250,
    })


def _floor_us(ns: int) -> int:
    return ns // 1000  # Python's // floors


def _expected(df: pd.DataFrame, ts_us: list[int]) -> list[tuple]:
    """Contract rows (event_ts as epoch microseconds) from what was written, in contract order."""
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        rows.append(tuple(
            ts_us[i] if c == "event_ts" else
            [int(x) for x in r[c]] if c == "semantic_ids" else
            (int(r[c]) if c in ("user_id", "ad_id", "campaign_id", "advertiser_id", "category_id", "position", "dwell_ms")
             else str(r[c]))
            for c in CONTRACT))
    return sorted(rows, key=lambda t: t[0])


def _read(spark, root: Path) -> tuple[list[tuple], list]:
    """(contract rows with event_ts as epoch microseconds, the full rows) of the partition, by event_id."""
    df = read_raw_partition(spark, str(root), SRC, DS)
    assert df.columns[:len(CONTRACT)] == CONTRACT
    assert df.schema["event_ts"].dataType.simpleString() == "timestamp"
    full = df.withColumn("event_ts", F.unix_micros("event_ts")).orderBy("event_id").collect()
    rows = [tuple(r[c] for c in CONTRACT) for r in full]
    return rows, full


def _part(root: Path) -> Path:
    p = root / SRC / f"ds={DS}"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def _logical_ts(file: Path) -> str:
    pf = pq.ParquetFile(file)
    col = pf.schema.column(pf.schema.names.index("event_ts"))
    return f"{col.physical_type} {col.logical_type}"


NS_US = [_floor_us(x) for x in TS_NS]
MS_US = [x // 10**6 * 1000 for x in TS_NS]  # the millisecond, floored, in microseconds


def test_pandas_default_nanos_naive(spark, tmp_path):
    """Plain ``df.to_parquet()``: TIMESTAMP(NANOS, false), int64 ids and position. Sub-microsecond digits are
    truncated (floored: -1 ns is -1 us), the naive value is UTC."""
    df = _frame()
    df.to_parquet(_part(tmp_path) / "pandas.parquet")
    assert _logical_ts(_part(tmp_path) / "pandas.parquet").startswith("INT64 Timestamp(isAdjustedToUTC=false, timeUnit=nanoseconds")
    rows, full = _read(spark, tmp_path)
    assert rows == _expected(df, NS_US)
    assert NS_US[:3] + NS_US[4:] == [_DAY_NS // 1000 + 1_123_456, _DAY_NS // 1000 + 45_000_500_000,
                                  _DAY_NS // 1000 + 86_400 * 10**6 - 1, -1]
    assert all(r["_reason"] is None and r["_original"] is None for r in full)


def test_pandas_nanos_with_time_zone(spark, tmp_path):
    """datetime64[ns, America/New_York]: TIMESTAMP(NANOS, true), the instant is kept."""
    df = _frame()
    df["event_ts"] = df["event_ts"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    df.to_parquet(_part(tmp_path) / "tz.parquet")
    assert "isAdjustedToUTC=true, timeUnit=nanoseconds" in _logical_ts(_part(tmp_path) / "tz.parquet")
    assert _read(spark, tmp_path)[0] == _expected(df, NS_US)


def test_int96(spark, tmp_path):
    df = _frame()
    pq.write_table(_arrow(df), _part(tmp_path) / "int96.parquet", use_deprecated_int96_timestamps=True)
    assert _logical_ts(_part(tmp_path) / "int96.parquet").startswith("INT96")
    assert _read(spark, tmp_path)[0] == _expected(df, NS_US)


@pytest.mark.parametrize("tz", [None, "UTC"], ids=["naive", "utc"])
def test_millis(spark, tmp_path, tz):
    df = _frame()
    if tz:
        df["event_ts"] = df["event_ts"].dt.tz_localize(tz)
    table = _arrow(df.iloc[:4])  # not the -1 ns row: the floor question is the ns cases'
    pq.write_table(table, _part(tmp_path) / "ms.parquet", coerce_timestamps="ms", allow_truncated_timestamps=True)
    assert "timeUnit=milliseconds" in _logical_ts(_part(tmp_path) / "ms.parquet")
    assert _read(spark, tmp_path)[0] == _expected(df.iloc[:4], MS_US)


def test_micros_without_time_zone_is_timestamp_ntz_read_as_utc(spark, tmp_path):
    df = _frame()
    pq.write_table(_arrow(df.iloc[:4]), _part(tmp_path) / "ntz.parquet", coerce_timestamps="us",
                   allow_truncated_timestamps=True)
    assert "isAdjustedToUTC=false, timeUnit=microseconds" in _logical_ts(_part(tmp_path) / "ntz.parquet")
    assert spark.read.parquet(str(_part(tmp_path) / "ntz.parquet")).schema["event_ts"].dataType.simpleString() == "timestamp_ntz"
    assert _read(spark, tmp_path)[0] == _expected(df.iloc[:4], NS_US[:4])


def test_int32_ids(spark, tmp_path):
    df = _frame()
    for c in ("user_id", "ad_id", "campaign_id", "position"):
        df[c] = (np.arange(len(df)) + 7).astype("int32")
    df.to_parquet(_part(tmp_path) / "int32.parquet")
    assert pq.read_schema(_part(tmp_path) / "int32.parquet").field("user_id").type == pa.int32()
    assert _read(spark, tmp_path)[0] == _expected(df, NS_US)


def test_digit_string_ids_and_one_unparsable(spark, tmp_path):
    df = _frame()
    df["user_id"] = ["17", "0042", "9007199254740993", "u-17", "-3"]  # 2^53 + 1: exact, not through a double
    df.to_parquet(_part(tmp_path) / "strids.parquet")
    rows, full = _read(spark, tmp_path)
    want = _expected(df.assign(user_id=[17, 42, 9007199254740993, 0, -3]), NS_US)
    want[3] = tuple(None if c == "user_id" else v for c, v in zip(CONTRACT, want[3]))
    assert rows == want
    reasons = {r["event_id"]: r["_reason"] for r in full}
    assert reasons == {"e0": None, "e1": None, "e2": None, "e3": "unparsable:user_id", "e4": None}
    bad = next(r for r in full if r["event_id"] == "e3")
    assert '"user_id":"u-17"' in bad["_original"]
    assert f'"event_ts":{TS_NS[3]}' in bad["_original"]  # the raw value as read: epoch nanoseconds, exact


def test_dictionary_encoded_strings(spark, tmp_path):
    df = _frame()
    for c in ("event_id", "surface", "media_type", "device_type"):
        df[c] = df[c].astype("category")
    df.to_parquet(_part(tmp_path) / "dict.parquet")
    meta = pq.ParquetFile(_part(tmp_path) / "dict.parquet").metadata.row_group(0)
    enc = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert any("DICTIONARY" in e for e in enc["surface"])
    assert pq.read_schema(_part(tmp_path) / "dict.parquet").field("surface").type == pa.dictionary(pa.int8(), pa.string())
    assert _read(spark, tmp_path)[0] == _expected(df.astype({c: str for c in ("event_id", "surface", "media_type",
                                                                              "device_type")}), NS_US)


def test_columns_in_another_order(spark, tmp_path):
    df = _frame()
    reordered = df[list(reversed(CONTRACT))]
    reordered.to_parquet(_part(tmp_path) / "reordered.parquet")
    assert pq.read_schema(_part(tmp_path) / "reordered.parquet").names[0] == "dwell_ms"
    assert _read(spark, tmp_path)[0] == _expected(df, NS_US)


def test_nanos_and_genuine_long_event_ts_in_one_partition(spark, tmp_path):
    """Same Spark schema (event_ts bigint), different meaning: the nanos file is converted from nanoseconds,
    the genuine long keeps the existing cast (epoch seconds). Files with the same schema and nanos columns
    are read together."""
    df = _frame()
    df.iloc[:2].to_parquet(_part(tmp_path) / "a-nanos.parquet")
    df.iloc[2:4].to_parquet(_part(tmp_path) / "b-nanos.parquet")
    secs = df.iloc[4:].assign(event_id="s0", event_ts=np.array([_DAY_NS // 10**9 + 60], dtype="int64"))
    secs.to_parquet(_part(tmp_path) / "c-seconds.parquet")
    rows, full = _read(spark, tmp_path)
    assert rows == sorted(_expected(df.iloc[:4], NS_US[:4]) + _expected(secs, [(_DAY_NS // 10**9 + 60) * 10**6]),
                          key=lambda t: t[0])
    assert all(r["_reason"] is None for r in full)


def test_nanos_where_the_contract_wants_another_type_names_file_and_column(spark, tmp_path):
    df = _frame()
    df["dwell_ms"] = pd.to_datetime(df["dwell_ms"], unit="ms")
    df.to_parquet(_part(tmp_path) / "dwell-as-ts.parquet")
    with pytest.raises(RawInputError, match=r"dwell-as-ts\.parquet.*'dwell_ms'.*TIMESTAMP\(NANOS\).*bigint"):
        read_raw_partition(spark, str(tmp_path), SRC, DS)


def test_session_without_nanos_as_long_names_file_and_column(spark, tmp_path):
    _frame().to_parquet(_part(tmp_path) / "pandas.parquet")
    before = spark.conf.get(NANOS_AS_LONG_CONF)
    spark.conf.set(NANOS_AS_LONG_CONF, "false")
    try:
        with pytest.raises(RawInputError, match=rf"pandas\.parquet.*\['event_ts'\].*{NANOS_AS_LONG_CONF}=true"):
            read_raw_partition(spark, str(tmp_path), SRC, DS)
    finally:
        spark.conf.set(NANOS_AS_LONG_CONF, before)


# ----------------------------------------------------------------------------------------------------------
# End to end: one generated day, one source rewritten with plain pandas to_parquet().

def _to_pandas_default(src_dir: Path, dst_dir: Path) -> None:
    """Each Parquet file read with pyarrow and written back the way a pandas user would: datetime64[ns]
    (nullable integer columns with nulls become float64 on the way, as they do for that user)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in src_dir.iterdir():
        if f.name.endswith(".parquet"):
            df = pq.read_table(f).to_pandas()
            df["event_ts"] = df["event_ts"].astype("datetime64[ns]")
            df.to_parquet(dst_dir / f.name)
        elif not f.name.startswith("."):  # the _SUCCESS marker; not Hadoop's .crc files of the originals
            shutil.copy(f, dst_dir / f.name)


def _contract_rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.withColumn("event_ts", F.unix_micros("event_ts")).collect()), key=repr)


def test_denoise_pandas_written_day_matches_original(spark, tiny_cfg, tiny_raw, tmp_path):
    """The generated day (shared with the other tests) with ad impressions rewritten by pandas: denoise's run
    publishes the clean rows and quarantine reasons that the original files give through the same library
    steps (read_raw_partition -> classify -> clean_rows), and the same counts per status."""
    from dynamix_spark.config import load_config
    from dynamix_spark.delta_io import conform
    from dynamix_spark.denoise import classify, clean_rows
    from jobs import denoise
    from schemas import CLEAN_TABLES, clean_table_name
    from schemas.raw import RAW_SOURCES

    pandas_root = tmp_path / "raw"
    for src in RAW_SOURCES:
        part = Path(tiny_cfg.paths.raw_root) / src / f"ds={DS}"
        if src == SRC:
            _to_pandas_default(part, pandas_root / src / f"ds={DS}")
        else:
            shutil.copytree(part, pandas_root / src / f"ds={DS}")
    rewritten = sorted((pandas_root / SRC / f"ds={DS}").glob("*.parquet"))
    assert rewritten and all("timeUnit=nanoseconds" in _logical_ts(f) for f in rewritten)
    cfg = load_config(ROOT / "conf" / "local.yaml", tiny_overrides(tmp_path) + [f"paths.raw_root={pandas_root}"])

    original = classify(read_raw_partition(spark, tiny_cfg.paths.raw_root, SRC, DS), SRC, DS, tiny_cfg.denoise)
    want_counts = {r["_status"]: r["count"] for r in original.groupBy("_status").count().collect()}
    want_clean = _contract_rows(conform(clean_rows(original, SRC, DS), CLEAN_TABLES[clean_table_name(SRC)]))
    want_q = sorted(((r["_status"], r["event_id"]) for r in original.where(F.col("_status").startswith("q:"))
                     .select("_status", "event_id").collect()), key=repr)

    outcomes = denoise.run(spark, cfg, DS)
    assert outcomes[SRC].counts == want_counts
    got_clean = _contract_rows(spark.read.format("delta").load(f"{cfg.paths.lake_root}/clean_{SRC}"))
    assert len(got_clean) > 100 and got_clean == want_clean
    q = spark.read.format("delta").load(f"{cfg.paths.lake_root}/quarantine").where(F.col("source") == SRC)
    got_q = sorted((("q:" + r["reason"], r["event_id"]) for r in q.select(
        "reason", F.get_json_object("original_row", "$.event_id").alias("event_id")).collect()), key=repr)
    assert got_q == want_q and len(got_q) > 0
