"""Test helpers that read raw Parquet with pyarrow/pandas, independently of the Spark code under test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def raw_frame(raw_root: str, source: str, ds: str | None = None) -> pd.DataFrame:
    base = Path(raw_root) / source
    parts = [base / f"ds={ds}"] if ds else sorted(base.glob("ds=*"))
    frames = []
    for p in parts:
        for f in sorted(p.glob("*.parquet")):
            df = pq.read_table(f).to_pandas()
            df["ds"] = p.name.split("=", 1)[1]
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def raw_row_count(raw_root: str, source: str, ds: str) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in (Path(raw_root) / source / f"ds={ds}").glob("*.parquet"))


def epoch_us(ts: pd.Series) -> np.ndarray:
    return ts.astype("datetime64[us]").astype("int64").to_numpy()
