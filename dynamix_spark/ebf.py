"""Point-in-time training examples with EBF sequences (DynamiX sections 3.3, 4.1, 4.2).

One example per clean ad impression (the query, at time t) of the day:
- label: a conversion on the same (user, ad_id) in [t - b, t + label_horizon_s]
  (:func:`dynamix_spark.window_stats.label_impressions` keyed by user and ad: one sort, no range join);
- EBF sequences: the last N events of each source strictly before t (an event at exactly t is excluded);
- segment: the segment of the user's latest window that ended at or before t (as-of; a window ending
  exactly at t counts). The window that contains t is never used: its statistics see conversions after t.

How it scales: one shuffle by user, one sort, one vectorised pass (no window function, no per-row Python):
1. Every attribute is encoded to its integer once per event, in Spark (hashes, dwell buckets, positions:
   :func:`encode`), and the queries are labelled by the sort-based labeller.
2. Queries, segment rows (keyed at window_end) and the events of the 3 sources become one narrow row type
   (user, time, kind, source, the encoded ints), shuffled once by ``user_id`` and sorted within the
   partition by (user, time, kind, event_id). At equal time, segment < query < event: "a window ending at t
   counts" and "an event at t is excluded" are both the sort order.
3. ``mapInArrow`` walks each partition's Arrow record batches in that order (:func:`_SequencePass`). Per
   batch and source, a running count of the source's events gives each query the index of its newest
   earlier event; the last N are a numpy gather over ``[count - N, count)``, cut at the user's first event.
   The as-of segment is a running maximum of segment-row positions. The age of an event at t is looked up
   in bucket thresholds that Spark's own ``age_bucket`` expression computed (so the encoding is Spark's,
   bit for bit). Only the last N events of each source and the last segment of the batch's last user are
   carried to the next batch: memory is O(batch x N) whatever a user's history holds (a user with a
   million events a day streams through in batches).

The output is the examples of all policies' union: :func:`apply_policy` projects each arm from it (null
columns, no recomputation), so the job computes the sequences once for every policy.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, LongType, StructField, StructType

from dynamix_spark.config import EbfConfig, StatsConfig
from dynamix_spark.window_stats import US, label_impressions
from schemas.ebf import (
    EBF_SOURCE_TABLES,
    EBF_SOURCES,
    TARGET_ATTRIBUTES,
    len_col,
    present_columns,
    seq_col,
    tgt_col,
)
from schemas.names import table_source
from schemas.raw import OPTIONAL_COLUMNS, RAW_SCHEMAS

HASH_MOD = (1 << 31) - 1
KIND_SEGMENT, KIND_QUERY, KIND_EVENT = 0, 1, 2
AGE_MAX = 40  # age buckets 1 .. AGE_MAX + 1


def source_attribute(df: DataFrame, src: str, attr: str) -> Column:
    """Column ``attr`` of an EBF source's clean events ``df``; an optional contract column (the organic and page
    ``category_id``, ``schemas.raw.OPTIONAL_COLUMNS``) that ``df`` lacks (a clean table, or a frame, from before
    the contract had it) is null, i.e. padding once encoded. Any other missing column is Spark's error."""
    raw = table_source(EBF_SOURCE_TABLES[src])
    if attr not in df.columns and attr in OPTIONAL_COLUMNS.get(raw, ()):
        return F.lit(None).cast(RAW_SCHEMAS[raw][attr].dataType).alias(attr)
    return F.col(attr)


def hashed_id(attr: str, col: Column) -> Column:
    """Categorical value -> int in [1, 2^31 - 1); null -> 0 (padding). Spark xxhash64 (seed 42) of (attr, value)."""
    h = F.pmod(F.xxhash64(F.lit(attr), col), F.lit(HASH_MOD)) + 1
    return F.when(col.isNull(), F.lit(0)).otherwise(h).cast("int")


def encode(attr: str, col: Column) -> Column:
    """The documented integer encoding of one attribute value (see ``schemas/ebf.py``), except event_ts."""
    if attr == "dwell_ms":
        v = F.least(F.lit(63), F.floor(F.lit(4.0) * F.log(F.greatest(col, F.lit(1)).cast("double")))) + 1
    elif attr == "position":
        v = F.least(F.greatest(col, F.lit(0)), F.lit(999)) + 1
    elif attr == "hour":
        v = F.hour(col) + 1
    else:
        return hashed_id(attr, col)
    return F.when(col.isNull(), F.lit(0)).otherwise(v).cast("int")


def age_bucket(t_us: Column, event_us: Column) -> Column:
    """Age of an event at the query time t: 1 + min(40, floor(log2(1 + seconds)))."""
    secs = ((t_us - event_us) / US).cast("double")
    return (F.least(F.lit(AGE_MAX), F.floor(F.log2(F.lit(1.0) + secs))) + 1).cast("int")


def age_thresholds(spark) -> np.ndarray:
    """``thr[k - 1]``: the smallest age in microseconds whose :func:`age_bucket` is at least k + 1 (k = 1..40).

    Evaluated by Spark's own expression at the candidates around each boundary (1 + d / 10^6 = 2^k, where
    floating-point rounding decides), so ``1 + searchsorted(thr, d, 'right')`` is Spark's bucket bit for bit
    (checked against the expression in tests/test_ebf_equivalence.py).
    """
    # log2 near k is k +- half an ulp of k (4e-15 at k = 32), i.e. 2^k x ln 2 x 4e-15 s: the boundary may
    # sit up to about 2^k / 4e8 us from the exact value, so the candidates span that (times 4) and 3 us.
    cands = [(k, (2 ** k - 1) * US + o) for k in range(1, AGE_MAX + 1)
             for o in range(-(3 + (2 ** k) // 10 ** 8), 4 + (2 ** k) // 10 ** 8)]
    df = spark.createDataFrame(cands, "k int, d long").select(
        "k", "d", age_bucket(F.col("d"), F.lit(0).cast("long")).alias("b"))
    got: dict[int, list[tuple[int, int]]] = {}
    for r in df.collect():
        got.setdefault(r["k"], []).append((r["d"], r["b"]))
    thr = []
    for k in range(1, AGE_MAX + 1):
        pts = sorted(got[k])
        if not (pts[0][1] <= k < pts[-1][1]):
            raise RuntimeError(f"age bucket boundary {k} outside its candidates: {pts}")
        thr.append(min(d for d, b in pts if b >= k + 1))
    return np.asarray(thr, dtype=np.int64)


# One narrow row type for every row of a user (a union needs one type): the encoded attributes of all
# sources (0 where a source has none; for a query, its target attributes), and the query's hour and label.
_ATTRS: tuple[str, ...] = tuple(dict.fromkeys(a for attrs in EBF_SOURCES.values() for a in attrs if a != "event_ts"))
_SRC_INDEX = {s: i for i, s in enumerate(EBF_SOURCES)}


def _row(user: Column, t_us: Column, kind: int, src: int, event_id: Column, attrs: Mapping[str, Column],
         seg: Column | None = None, hour: Column | None = None, label: Column | None = None) -> list[Column]:
    zero = F.lit(0)
    return [user.alias("user_id"), t_us.alias("t_us"), F.lit(kind).alias("kind"), F.lit(src).alias("src"),
            event_id.alias("event_id"), (seg if seg is not None else zero).cast("int").alias("seg"),
            (hour if hour is not None else zero).cast("int").alias("hour"),
            (label if label is not None else zero).cast("int").alias("label"),
            *[attrs.get(a, zero).cast("int").alias(a) for a in _ATTRS]]


def output_schema(ebf_cfg: EbfConfig) -> StructType:
    """The examples' columns (``EBF_EXAMPLES`` less ``ds``/``policy``, segment resolved, label last)."""
    seq = [StructField(seq_col(s, a), ArrayType(IntegerType(), False), False)
           for s, attrs in EBF_SOURCES.items() for a in attrs]
    return StructType(
        [StructField("user_id", LongType(), False), StructField("event_ts_us", LongType(), False),
         StructField("segment", IntegerType(), False), StructField("segment_window_end_us", LongType(), True)]
        + [StructField(tgt_col(a), IntegerType(), False) for a in TARGET_ATTRIBUTES]
        + seq + [StructField(len_col(s), IntegerType(), False) for s in EBF_SOURCES]
        + [StructField("label", IntegerType(), False)])


class _SequencePass:
    """The per-partition function of ``mapInArrow``: sorted narrow rows in, one example per query out.

    Picklable (plain attributes): Spark ships it to the Python workers.
    """

    def __init__(self, ebf_cfg: EbfConfig, present: set[str], thresholds: np.ndarray, null_segment: int,
                 schema: StructType):
        self.sources = [(s, int(ebf_cfg.seq_len[s]), [a for a in attrs if a != "event_ts"], s in present)
                        for s, attrs in EBF_SOURCES.items()]
        self.thr = thresholds
        self.null_segment = int(null_segment)
        self.schema = schema

    def _empty_carry(self) -> dict:
        return {s: (np.zeros((0, len(attrs)), np.int32), np.zeros(0, np.int64)) for s, _, attrs, _ in self.sources}

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark.sql.pandas.types import to_arrow_schema

        arrow_schema = to_arrow_schema(self.schema)
        carry_user, carry, carry_seg = None, self._empty_carry(), None
        for rb in batches:
            if rb.num_rows == 0:
                continue
            out, carry_user, carry, carry_seg = self._batch(rb, carry_user, carry, carry_seg, arrow_schema)
            if out is not None:
                yield out

    def _batch(self, rb: pa.RecordBatch, carry_user, carry, carry_seg, arrow_schema):
        n = rb.num_rows
        col = {name: rb.column(i).to_numpy(zero_copy_only=False) for i, name in enumerate(rb.schema.names)}
        uid, t, kind, src = col["user_id"], col["t_us"], col["kind"], col["src"]
        pos = np.arange(n)
        new = np.ones(n, dtype=bool)
        new[1:] = uid[1:] != uid[:-1]
        gstart = np.maximum.accumulate(np.where(new, pos, 0))  # first row of each row's user in the batch
        cont = carry_user is not None and uid[0] == carry_user  # the first user goes on from the last batch
        carried = (gstart == 0) & cont
        q = np.flatnonzero(kind == KIND_QUERY)
        nq = len(q)
        tq = t[q]

        # As-of segment: the last segment row at or before the query, of the same user.
        ls = np.maximum.accumulate(np.where(kind == KIND_SEGMENT, pos, -1))
        lq = ls[q]
        ok = lq >= gstart[q]
        seg = np.full(nq, self.null_segment, np.int32)
        seg_end = np.zeros(nq, np.int64)
        seg[ok] = col["seg"][lq[ok]]
        seg_end[ok] = t[lq[ok]]
        has_seg = ok.copy()
        if cont and carry_seg is not None:
            use = ~ok & carried[q]
            seg[use], seg_end[use] = carry_seg
            has_seg |= use
        if ls[-1] >= gstart[-1]:
            new_seg = (int(col["seg"][ls[-1]]), int(t[ls[-1]]))
        else:
            new_seg = carry_seg if (cont and gstart[-1] == 0) else None

        arrays: dict[str, pa.Array] = {
            "user_id": pa.array(uid[q]), "event_ts_us": pa.array(tq), "segment": pa.array(seg),
            "segment_window_end_us": pa.array(seg_end, mask=~has_seg),
            "label": pa.array(col["label"][q].astype(np.int32)),
        }
        for a in TARGET_ATTRIBUTES:
            arrays[tgt_col(a)] = pa.array(col["hour" if a == "hour" else a][q].astype(np.int32))

        new_carry = {}
        for s, n_max, attrs, present in self.sources:
            offsets = pa.array(np.arange(0, nq * n_max + 1, n_max, dtype=np.int32))
            if not present:
                zeros = pa.array(np.zeros(nq * n_max, np.int32))
                for a in EBF_SOURCES[s]:
                    arrays[seq_col(s, a)] = pa.ListArray.from_arrays(offsets, zeros)
                arrays[len_col(s)] = pa.array(np.zeros(nq, np.int32))
                new_carry[s] = carry[s]
                continue
            m = (kind == KIND_EVENT) & (src == _SRC_INDEX[s])
            ev = np.flatnonzero(m)
            cv, ct = carry[s] if cont else (carry[s][0][:0], carry[s][1][:0])
            c0 = len(ct)
            vals = np.concatenate([cv, np.stack([col[a][ev] for a in attrs], axis=1).astype(np.int32)])
            ts = np.concatenate([ct, t[ev]])
            before = c0 + np.cumsum(m) - m  # events of the source before each row (carry included)
            first = before[gstart]
            first[carried] = 0  # the carried events are the first user's
            k = before[q]
            length = np.minimum(n_max, k - first[q]).astype(np.int32)
            j = np.arange(n_max)
            valid = j[None, :] < length[:, None]
            idx = np.where(valid, k[:, None] - 1 - j[None, :], 0)
            total = len(ts)
            if total == 0:
                valid[:] = False
                vals, ts, idx = np.zeros((1, len(attrs)), np.int32), np.zeros(1, np.int64), np.zeros_like(idx)
            for ai, a in enumerate(EBF_SOURCES[s]):
                if a == "event_ts":
                    age = 1 + np.searchsorted(self.thr, tq[:, None] - ts[idx], side="right")
                    g = np.where(valid, age, 0).astype(np.int32)
                else:
                    g = np.where(valid, vals[idx, attrs.index(a)], 0).astype(np.int32)
                arrays[seq_col(s, a)] = pa.ListArray.from_arrays(offsets, pa.array(g.ravel()))
            arrays[len_col(s)] = pa.array(length)
            # Carry the last n_max events of the batch's last user.
            keep_from = max(int(first[-1]), total - n_max)
            new_carry[s] = (vals[keep_from:total], ts[keep_from:total]) if total else (cv, ct)
        out = None
        if nq:
            out = pa.RecordBatch.from_arrays(
                [arrays[f.name].cast(f.type) for f in arrow_schema], schema=arrow_schema)
        return out, uid[-1], new_carry, new_seg


def build_examples(
    queries: DataFrame,
    events: Mapping[str, DataFrame],
    segments: DataFrame,
    conversions: DataFrame,
    stats_cfg: StatsConfig,
    ebf_cfg: EbfConfig,
    null_segment: int = 0,
) -> DataFrame:
    """Clean ad impressions of the day (``queries``) -> one example each, all sequence columns filled.

    ``events[src]``: clean events of each EBF source (user_id, event_id, event_ts, the source's attributes)
    covering the lookback; ``segments``: (user_id, window_end, segment); ``conversions``:
    (user_id, ad_id, event_ts) covering [t - b, t + label_horizon_s]. Returns the ``EBF_EXAMPLES`` columns
    but ``ds`` and ``policy`` (:func:`apply_policy` sets those), with ``segment`` already resolved.
    """
    spark = queries.sparkSession
    tgt_attrs = [a for a in TARGET_ATTRIBUTES if a != "hour"]
    q = queries.select("user_id", "event_id", "event_ts", "ad_id",
                       *[encode(a, F.col(a)).alias(f"_e_{a}") for a in tgt_attrs],
                       encode("hour", F.col("event_ts")).alias("_e_hour"))
    keep = ("event_id", *[f"_e_{a}" for a in tgt_attrs], "_e_hour")
    labelled = label_impressions(
        q.where(F.col("ad_id").isNotNull()), conversions.where(F.col("ad_id").isNotNull()), stats_cfg,
        keys=("user_id", "ad_id"), horizon_s=ebf_cfg.label_horizon_s, keep=keep,
    ).select("user_id", "event_ts", *keep, "label").unionByName(
        q.where(F.col("ad_id").isNull()).select("user_id", "event_ts", *keep, F.lit(0).alias("label")))
    rows = [labelled.select(*_row(F.col("user_id"), F.unix_micros("event_ts"), KIND_QUERY, -1, F.col("event_id"),
                                  {a: F.col(f"_e_{a}") for a in tgt_attrs}, hour=F.col("_e_hour"),
                                  label=F.col("label")))]
    for src, df in events.items():
        rows.append(df.select(*_row(F.col("user_id"), F.unix_micros("event_ts"), KIND_EVENT, _SRC_INDEX[src],
                                    F.col("event_id"), {a: encode(a, source_attribute(df, src, a)) for a in EBF_SOURCES[src]
                                                        if a != "event_ts"})))
    rows.append(segments.select(*_row(F.col("user_id"), F.unix_micros("window_end"), KIND_SEGMENT, -1,
                                      F.lit(None).cast("string"), {}, seg=F.col("segment"))))
    u = rows[0]
    for r in rows[1:]:
        u = u.unionByName(r)
    u = (u.repartition("user_id")
         .sortWithinPartitions("user_id", "t_us", "kind", "event_id")
         .drop("event_id"))
    schema = output_schema(ebf_cfg)
    fn = _SequencePass(ebf_cfg, set(events), age_thresholds(spark), null_segment, schema)
    return u.mapInArrow(fn, schema)


def apply_policy(examples: DataFrame, policy: str, ebf_cfg: EbfConfig) -> DataFrame:
    """Null the sequence columns a policy does not give an example's segment (0 passive, >= 1 active).

    A source with no column left gets length 0. The result carries ``policy`` as a column.
    """
    spec = ebf_cfg.policies[policy]
    low = ebf_cfg.low_importance_attributes
    passive = set(present_columns(spec.passive, low))
    active = set(present_columns(spec.active, low))
    is_passive = F.col("segment") == 0
    cols = []
    for c in examples.columns:
        if c in {seq_col(s, a) for s, attrs in EBF_SOURCES.items() for a in attrs}:
            cols.append(_pick(c, c in passive, c in active, is_passive))
    out = examples.select(*[F.col(c) for c in examples.columns if not c.startswith(tuple(f"{s}_seq_" for s in EBF_SOURCES))],
                          *cols)
    for src, attrs in EBF_SOURCES.items():
        src_cols = {seq_col(src, a) for a in attrs}
        keep_p, keep_a = bool(src_cols & passive), bool(src_cols & active)
        out = out.withColumn(len_col(src), _pick(len_col(src), keep_p, keep_a, is_passive, default=F.lit(0)))
    return out.withColumn("policy", F.lit(policy))


def _pick(c: str, for_passive: bool, for_active: bool, is_passive: Column, default: Column | None = None) -> Column:
    none = default if default is not None else F.lit(None)
    if for_passive and for_active:
        return F.col(c)
    if not for_passive and not for_active:
        return none.cast("int" if default is not None else "array<int>").alias(c)
    keep = is_passive if for_passive else ~is_passive
    return F.when(keep, F.col(c)).otherwise(none).alias(c)


__all__ = ["build_examples", "apply_policy", "encode", "hashed_id", "age_bucket"]
