"""The previous build_examples (Spark windows: sliding collect_list of structs, then last-value windows),
kept as an independent oracle for the vectorised build in ``dynamix_spark/ebf.py`` (tests/test_ebf_equivalence.py).
Not used by any job. Its original docstring follows.

Point-in-time training examples with EBF sequences (DynamiX sections 3.3, 4.1, 4.2).

One example per clean ad impression (the query, at time t) of the day:
- label: a conversion on the same (user, ad_id) in [t - b, t + label_horizon_s]
  (:func:`dynamix_spark.window_stats.label_impressions` keyed by user and ad: one sort, no range join);
- EBF sequences: the last N events of each source strictly before t (an event at exactly t is excluded);
- segment: the segment of the user's latest window that ended at or before t (as-of; a window ending
  exactly at t counts). The window that contains t is never used: its statistics see conversions after t.

How it scales (no cross join, no range join, no unbounded collection):
1. All rows of the users (queries, segment rows keyed at window_end, events of the 3 sources) are shuffled
   once by ``user_id``.
2. Window A over (user, source) ordered by time: ``collect_list`` over ``rowsBetween(-(N-1), 0)``
   gives each event the list of its source's last N events ending at itself (bounded by N), and
   ``lead`` tells whether a query comes before the source's next event. Only those "last event before a
   query" rows keep their list: at most one per source per query.
3. Window B over user ordered by (time, kind) with a growing frame: ``last(..., ignorenulls)`` hands each
   query the latest list of every source and the latest segment. Rows at equal time are ordered
   segment < query < event, which gives "window ending at t counts" and "event at t excluded".

Windows A and B partition by user (B) or (user, source) (A), which the one shuffle already satisfies.
Skew: a user with a million events a day sits in one task (both windows need the user's whole time
order); the windows buffer spill to disk, the cost stays O(n log n + n N) for that user, and no other
user waits on it beyond that task. The job records the largest user's example count in the run metrics.
"""
from __future__ import annotations

from typing import Mapping

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dynamix_spark.config import EbfConfig, StatsConfig
from dynamix_spark.window_stats import label_impressions
from schemas.ebf import (
    EBF_SOURCES,
    TARGET_ATTRIBUTES,
    len_col,
    seq_col,
    tgt_col,
)

# The encoding (hashes, dwell buckets, log2 ages) is shared with the build under test: tests/test_ebf.py checks it
# by hand; this oracle is for the sequence construction (which events, in which order, which segment).
from dynamix_spark.ebf import KIND_EVENT, KIND_QUERY, KIND_SEGMENT, age_bucket, encode  # noqa: E402


# One struct type for the events of every source (a union needs one type): all sources' attributes
# (null where a source has none) and the raw event time, from which the age at t is computed.
_STRUCT_ATTRS: tuple[str, ...] = tuple(dict.fromkeys(a for attrs in EBF_SOURCES.values() for a in attrs if a != "event_ts"))


def _event_struct(src: str) -> Column:
    fields = [(encode(a, F.col(a)) if a in EBF_SOURCES[src] else F.lit(None).cast("int")).alias(a)
              for a in _STRUCT_ATTRS]
    return F.struct(*fields, F.unix_micros("event_ts").alias("ts"))


def _field(attr: str):
    # A one-argument lambda (F.transform passes (element, index) to a two-argument one); padding -> 0.
    return lambda x: F.coalesce(x[attr], F.lit(0))


def _age_of(t_us: Column):
    return lambda x: F.when(x.isNull(), F.lit(0)).otherwise(age_bucket(t_us, x["ts"]))


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
    n_max = max(ebf_cfg.seq_len.values())
    q = queries.select(
        "user_id", F.lit("q").alias("src"), F.lit(KIND_QUERY).alias("kind"), "event_id",
        F.unix_micros("event_ts").alias("t_us"),
        *[encode(a, F.col("event_ts") if a == "hour" else F.col(a)).alias(tgt_col(a)) for a in TARGET_ATTRIBUTES],
    )
    rows = [q]
    for src, df in events.items():
        rows.append(df.select(
            "user_id", F.lit(src).alias("src"), F.lit(KIND_EVENT).alias("kind"), "event_id",
            F.unix_micros("event_ts").alias("t_us"), _event_struct(src).alias("ev")))
    rows.append(segments.select(
        "user_id", F.lit("seg").alias("src"), F.lit(KIND_SEGMENT).alias("kind"), F.lit(None).cast("string").alias("event_id"),
        F.unix_micros("window_end").alias("t_us"), F.col("segment").cast("int").alias("seg")))
    u = rows[0]
    for r in rows[1:]:
        u = u.unionByName(r, allowMissingColumns=True)
    u = u.repartition("user_id")

    # Window A, per (user, source): the source's last N events ending at each event, and whether a query
    # comes before the source's next event (n_queries_before grows on query rows only).
    order = [F.col("t_us"), F.col("kind"), F.col("event_id")]
    by_user = Window.partitionBy("user_id").orderBy(*order).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    u = u.withColumn("q_before", F.sum(F.when(F.col("kind") == KIND_QUERY, 1).otherwise(0)).over(by_user))
    u = u.withColumn("q_total", F.sum(F.when(F.col("kind") == KIND_QUERY, 1).otherwise(0)).over(
        Window.partitionBy("user_id")))
    by_src = Window.partitionBy("user_id", "src").orderBy(*order)
    u = u.withColumn("lst", F.when(F.col("kind") == KIND_EVENT, F.collect_list("ev").over(
        by_src.rowsBetween(-(n_max - 1), Window.currentRow))))
    u = u.withColumn("_next_q", F.lead("q_before").over(by_src))
    needed = F.coalesce(F.col("_next_q"), F.col("q_total")) > F.col("q_before")
    u = u.where((F.col("kind") != KIND_EVENT) | needed)

    # Window B, per user in time order: the latest list of each source and the latest segment.
    for src in events:
        u = u.withColumn(f"_l_{src}", F.last(F.when(F.col("src") == src, F.col("lst")), ignorenulls=True).over(by_user))
    u = u.withColumn("_seg", F.last("seg", ignorenulls=True).over(by_user))
    u = u.withColumn("_seg_end", F.last(F.when(F.col("kind") == KIND_SEGMENT, F.col("t_us")), ignorenulls=True)
                     .over(by_user))
    ex = u.where(F.col("kind") == KIND_QUERY)

    # Per source, once: the last n events newest first, padded with null structs to n (materialized
    # columns, so the per-attribute arrays below do not recompute the slice).
    ev_type = u.schema["ev"].dataType
    seq_cols: list[Column] = []
    len_cols: list[Column] = []
    for src, attrs in EBF_SOURCES.items():
        n = ebf_cfg.seq_len[src]
        if src not in events:
            len_cols.append(F.lit(0).alias(len_col(src)))
            seq_cols += [F.array_repeat(F.lit(0), n).alias(seq_col(src, a)) for a in attrs]
            continue
        lst = F.coalesce(F.col(f"_l_{src}"), F.array().cast(f"array<{ev_type.simpleString()}>"))
        # The last n of at most n_max (slice with a negative start past the front returns []).
        ex = ex.withColumn(f"_k_{src}", F.least(F.size(lst), F.lit(n)))
        recent = F.reverse(F.slice(lst, F.greatest(F.size(lst) - n + 1, F.lit(1)), n))
        ex = ex.withColumn(f"_r_{src}", F.concat(recent, F.array_repeat(F.lit(None).cast(ev_type),
                                                                       F.lit(n) - F.col(f"_k_{src}"))))
        len_cols.append(F.col(f"_k_{src}").cast("int").alias(len_col(src)))
        for a in attrs:
            if a == "event_ts":
                f = _age_of(F.col("t_us"))
            else:
                f = _field(a)
            seq_cols.append(F.transform(F.col(f"_r_{src}"), f).cast("array<int>").alias(seq_col(src, a)))

    labels = label_impressions(
        queries.where(F.col("ad_id").isNotNull()), conversions.where(F.col("ad_id").isNotNull()), stats_cfg,
        keys=("user_id", "ad_id"), horizon_s=ebf_cfg.label_horizon_s, keep=("event_id",),
    ).select("event_id", F.col("label").alias("_label"))
    out = ex.select(
        "user_id", "event_id", F.col("t_us").alias("event_ts_us"),
        F.coalesce(F.col("_seg"), F.lit(null_segment)).cast("int").alias("segment"),
        F.col("_seg_end").alias("segment_window_end_us"),
        *[F.col(tgt_col(a)) for a in TARGET_ATTRIBUTES], *seq_cols, *len_cols,
    )
    return (out.join(labels, "event_id", "left")
            .withColumn("label", F.coalesce(F.col("_label"), F.lit(0)).cast("int"))
            .drop("_label", "event_id"))


__all__ = ["build_examples"]
