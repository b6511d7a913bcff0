"""The organic and page ``category_id`` (issue 20), a column the raw contract gained after producers landed files
without it: such files read it as null, files with it read its values, a partition may mix both, a required
column is still required; and a clean Delta table written before the column gains it on the next day's write
(earlier partitions read it as null). Files are written with pandas; expected values are spelled out here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dynamix_spark.delta_io import overwrite_partition
from dynamix_spark.raw_io import RawInputError, read_raw_partition
from schemas.tables import CLEAN_TABLES

DS = "2026-11-02"
SRC = "organic_impressions"


def _frame(ids: list[int], category: list[int] | None) -> pd.DataFrame:
    df = pd.DataFrame({
        "event_id": [f"o{i}" for i in ids],
        "user_id": np.array(ids, dtype="int64"),
        "event_ts": pd.to_datetime([f"{DS}T0{i % 9}:00:00" for i in ids]),
        "content_id": np.array(ids, dtype="int64") * 1000,
        "dwell_ms": np.full(len(ids), 1500, dtype="int64"),
        "media_type": ["video"] * len(ids),
        "position": np.arange(len(ids), dtype="int64"),
    })
    if category is not None:
        df.insert(4, "category_id", np.array(category, dtype="int64"))
    return df


def _land(root, files: dict[str, pd.DataFrame]) -> None:
    part = root / SRC / f"ds={DS}"
    part.mkdir(parents=True)
    for name, df in files.items():
        df.to_parquet(part / name, index=False)
    (part / "_SUCCESS").touch()


def test_files_with_and_without_category_id_in_one_partition(spark, tmp_path):
    _land(tmp_path, {"old.parquet": _frame([1, 2], None), "new.parquet": _frame([3, 4], [7, 8])})
    df = read_raw_partition(spark, str(tmp_path), SRC, DS)
    assert df.schema["category_id"].dataType.simpleString() == "bigint"
    got = {r.event_id: (r.category_id, r.content_id, r._reason) for r in df.collect()}
    assert got == {"o1": (None, 1000, None), "o2": (None, 2000, None), "o3": (7, 3000, None), "o4": (8, 4000, None)}


def test_a_required_column_is_still_required(spark, tmp_path):
    _land(tmp_path, {"bad.parquet": _frame([1], [5]).drop(columns=["content_id"])})
    with pytest.raises(RawInputError, match="missing required column 'content_id'"):
        read_raw_partition(spark, str(tmp_path), SRC, DS)


def test_a_clean_table_from_before_the_column_gains_it(spark, tmp_path):
    table = "clean_organic_impressions"
    path = str(tmp_path / table)
    schema = CLEAN_TABLES[table]
    old_schema = type(schema)([f for f in schema.fields if f.name != "category_id"])
    old = spark.createDataFrame(_frame([1, 2], None).assign(ds="2026-11-01"), old_schema)
    overwrite_partition(old, path, "2026-11-01", old_schema, {"job": "test"})
    assert "category_id" not in spark.read.format("delta").load(path).columns
    new = spark.createDataFrame(_frame([3], [9]).assign(ds=DS)[[f.name for f in schema.fields]], schema)
    overwrite_partition(new, path, DS, schema, {"job": "test"})
    rows = spark.read.format("delta").load(path).select("event_id", "category_id", "ds").orderBy("event_id").collect()
    assert [tuple(r) for r in rows] == [("o1", None, "2026-11-01"), ("o2", None, "2026-11-01"), ("o3", 9, DS)]
    assert spark.read.format("delta").load(path).schema["category_id"].dataType.simpleString() == "bigint"
