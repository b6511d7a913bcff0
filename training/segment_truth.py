"""The pipeline's segments against the generator's planted truth (issue 20): does the active segment hold the
examples whose window is of an active engagement type, and how many such examples sit in the passive segment?

An example's segment comes from the user's previous window (``dynamix_spark/ebf.py``); its truth is the
engagement type of the window it is in (the planted 6-hour windows of ``truth_engagement``: ``positive`` and
``negative`` are active, ``low`` passive), the one whose conversions it is labelled with. The share of
passive-segment examples in active-type windows is what boosting everyone can gain over boosting the active
segment on this data. JVM-free (pyarrow and pandas); no truth (data from ``--raw-root``): nothing to report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from training.delta_snapshot import DeltaFile

ACTIVE_TYPES = ("positive", "negative")


def truth_confusion(examples: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """``examples``: user_id, event_ts_us, segment (0 passive, >= 1 active); ``truth``: user_id, window_start
    (timestamp), engagement_type. Each example takes the type of the user's latest truth window starting at or
    before it (none: not counted). Returns per segment class ``{"n", "active_window_share"}`` and the total."""
    t = truth[["user_id", "window_start", "engagement_type"]].copy()
    start = pd.to_datetime(t["window_start"], utc=True)
    t["start_us"] = ((start - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)).astype(np.int64)
    t = t.sort_values("start_us")
    e = examples[["user_id", "event_ts_us", "segment"]].astype({"event_ts_us": np.int64}).sort_values("event_ts_us")
    m = pd.merge_asof(e, t[["user_id", "start_us", "engagement_type"]], left_on="event_ts_us", right_on="start_us",
                      by="user_id", direction="backward").dropna(subset=["engagement_type"])
    m["in_active"] = m["engagement_type"].isin(ACTIVE_TYPES)
    out = {}
    for name, rows in (("passive", m[m["segment"] == 0]), ("active", m[m["segment"] >= 1]), ("all", m)):
        out[name] = {"n": int(len(rows)),
                     "active_window_share": float(rows["in_active"].mean()) if len(rows) else None}
    return out


def segment_truth(files: Iterable[DeltaFile], days: Iterable[str], truth_root: str, policy: str = "baseline"
                  ) -> dict | None:
    """:func:`truth_confusion` of ``policy``'s examples of ``days`` in the ``ebf_examples`` files ``files`` (a
    snapshot's); None without ``<truth_root>/truth_engagement``."""
    path = Path(truth_root) / "truth_engagement"
    if not path.exists():
        return None
    days = set(days)
    parts = []
    for f in files:
        pv = f.partition_values
        if pv.get("policy") == policy and pv.get("ds") in days:
            df = pq.read_table(f.path, columns=["user_id", "event_ts_us"]).to_pandas()
            df["segment"] = int(pv.get("segment") or 0)
            parts.append(df)
    if not parts:
        return None
    truth = pd.read_parquet(path, columns=["user_id", "window_start", "engagement_type"])
    return truth_confusion(pd.concat(parts, ignore_index=True), truth)
