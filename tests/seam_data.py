"""Rows the training-side tests write into Delta tables with delta-spark, as plain Python (no pyspark, no
torch): both environments import this module. The training side holds the rows it asserts against; the
Spark side (``tests/seam_spark.py``, run with ``.venv/bin/python``) writes exactly those rows, handed over as
JSON.

``loader_*``: the ``ebf_examples``-shaped table of tests/test_loader.py (see its docstring for the versions).
``train_rows``: the baseline-policy table of tests/test_train.py.
"""
from __future__ import annotations

import numpy as np

from schemas.ebf import EBF_SOURCES, TARGET_COLUMNS, seq_col

# ---------------------------------------------------------------------------------------- tests/test_loader.py
D1, D2 = "2026-11-01", "2026-11-02"
POLICY = "remove_passive"
N = 4  # sequence length of every source in this table
REMOVED = {seq_col("ad", a) for a in ("surface", "media_type", "position", "device_type")}
# The hand-written row: segment 1 of D1 in set A.
SPECIAL = dict(user_id=424242, event_ts_us=1_793_577_600_123_456, label=1, ad_seq_ad_id=[9, 8, 7, 0],
               ad_seq_dwell_ms=[3, 2, 1, 0], ad_seq_position=[12, 11, 10, 0], ad_len=3, tgt_ad_id=55, tgt_hour=24)


def _row(k: int, ds: str, segment: int, policy: str = POLICY) -> dict:
    """Row number k: every value a function of k, sequence of length k % 5 padded with 0."""
    length = min(k % 5, N)
    r = {"user_id": k, "event_ts_us": 1_000_000 * k + 7, "label": k % 2, "segment_window_end_us": None,
         "ds": ds, "policy": policy, "segment": segment}
    for i, c in enumerate(TARGET_COLUMNS):
        r[c] = 100 * k + i
    for src, attrs in EBF_SOURCES.items():
        r[f"{src}_len"] = length if src == "ad" else 0
        for j, a in enumerate(attrs):
            c = seq_col(src, a)
            if src != "ad" or (segment == 0 and policy == POLICY and c in REMOVED):
                r[c] = None
            else:
                r[c] = [1000 * k + 10 * j + p + 1 for p in range(length)] + [0] * (N - length)
    return r


def _set(first_k: int, per_partition: int, days: tuple[str, ...]) -> list[dict]:
    rows, k = [], first_k
    for ds in days:
        for seg in (0, 1):
            for _ in range(per_partition):
                rows.append(_row(k, ds, seg))
                k += 1
    return rows


SET_A = _set(1, 10, (D1, D2))
SET_A[10] = {**SET_A[10], **SPECIAL}  # SET_A[10] is the first row of (D1, segment 1)
BASELINE = [_row(900 + i, D1, 0, "baseline") for i in range(3)]
SET_C = _set(201, 8, (D2,))

# ----------------------------------------------------------------------------------------- tests/test_train.py
TRAIN_DAYS = ("2026-11-01", "2026-11-02")
TRAIN_N = 4
ROWS_PER_PARTITION = 320


def flipped_eval_rows() -> list[dict]:
    """train_rows() with the labels of the evaluation day (the last) flipped: what the model learns on the
    training day makes evaluation NE rise after its first evaluations (tests/test_train.py, issue 16)."""
    return [{**r, "label": 1 - r["label"]} if r["ds"] == TRAIN_DAYS[-1] else r for r in train_rows()]


def train_rows() -> list[dict]:
    """Baseline-policy rows; the label is a function of the target category (learnable), 25% positive."""
    rng = np.random.default_rng(3)
    out = []
    for ds in TRAIN_DAYS:
        for seg in (0, 1):
            for i in range(ROWS_PER_PARTITION):
                cat = int(rng.integers(1, 41))
                r = {"user_id": int(rng.integers(1, 500)), "event_ts_us": int(1_793_500_000_000_000 + i),
                     "label": int(cat % 4 == 0), "segment_window_end_us": None, "ds": ds, "policy": "baseline",
                     "segment": seg}
                for c in TARGET_COLUMNS:
                    r[c] = int(rng.integers(1, 50))
                r["tgt_category_id"] = cat
                length = int(rng.integers(0, TRAIN_N + 1))
                for src, attrs in EBF_SOURCES.items():
                    r[f"{src}_len"] = length if src == "ad" else 0
                    for a in attrs:
                        r[seq_col(src, a)] = ([int(x) for x in rng.integers(1, 99, length)] + [0] * (TRAIN_N - length)
                                              if src == "ad" else None)
                out.append(r)
    return out


# ------------------------------------------------------------------------------------- tests/test_importance.py
IMPORTANCE_SIGNAL = "category_id"  # the one ad attribute the label depends on


def importance_rows() -> list[dict]:
    """Baseline-policy rows whose label is a function of one ad sequence attribute only: every position of
    ``ad_seq_category_id`` holds the row's category c (1..20), label = c even; every other attribute, the
    targets included, is noise. A model trained on them needs that attribute and no other."""
    rng = np.random.default_rng(5)
    out = []
    for ds in TRAIN_DAYS:
        for seg in (0, 1):
            for i in range(ROWS_PER_PARTITION):
                cat = int(rng.integers(1, 21))
                r = {"user_id": int(rng.integers(1, 500)), "event_ts_us": int(1_793_500_000_000_000 + i),
                     "label": int(cat % 2 == 0), "segment_window_end_us": None, "ds": ds, "policy": "baseline",
                     "segment": seg}
                for c in TARGET_COLUMNS:
                    r[c] = int(rng.integers(1, 50))
                for src, attrs in EBF_SOURCES.items():
                    r[f"{src}_len"] = TRAIN_N if src == "ad" else 0
                    for a in attrs:
                        if src != "ad":
                            r[seq_col(src, a)] = None
                        elif a == IMPORTANCE_SIGNAL:
                            r[seq_col(src, a)] = [cat] * TRAIN_N
                        else:
                            r[seq_col(src, a)] = [int(x) for x in rng.integers(1, 99, TRAIN_N)]
                out.append(r)
    return out
