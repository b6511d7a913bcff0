"""A candidate formulation of user_window_stats measured by ``bench/bench_stats.py --methods arrow`` (issue 14:
"move it onto the Arrow path too if that brings it under 1.5x its sort floor"): the labelling's shuffle and
sort, then eq. 1's labels and the partial statistics of eqs. 6-8 in one ``mapInArrow`` numpy pass, then the
job's own merge per window (``dynamix_spark.window_stats._merge_partials``). It gives the same statistics
(the bench compares n_pos; checked against the brute force of tests/test_window_stats.py on the hand-built
and random histories with 97-row Arrow batches) and was not faster than the window-function path
(BENCHMARKS.md), so the job keeps that path; this stays here as the measured alternative.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from dynamix_spark.config import StatsConfig
from dynamix_spark.window_stats import US, _merge_partials


PARTIAL_SCHEMA = ("user_id long, skew_bucket long, window_start timestamp, np long, nn long, "
                  "mp double, mn double, m2p double, m2n double")


class _LabelPartials:
    """``mapInArrow`` function: rows sorted per (user, bucket) by key descending (conversions first at equal
    key) in; one partial-statistics row per (user, bucket) run of each batch out.

    The label of an impression is the running minimum of the conversion keys seen before it in its group,
    which, keys being descending, is the key of the last conversion row: a forward fill, carried across
    batches for the group that goes on. A group split by a batch boundary gives two partial rows, which
    the merge of :func:`_merge_partials` combines like two buckets.
    """

    def __init__(self, s_us: int, bucket_us: int, window_us: int):
        self.s_us, self.bucket_us, self.window_us = int(s_us), int(bucket_us), int(window_us)

    def __call__(self, batches):
        import numpy as np
        import pyarrow as pa

        carry = None  # (user, bucket, key of the last conversion seen in that group, or None)
        for rb in batches:
            n = rb.num_rows
            if n == 0:
                continue
            col = {name: rb.column(i) for i, name in enumerate(rb.schema.names)}
            uid = col["user_id"].to_numpy(zero_copy_only=False)
            bkt = col["skew_bucket"].to_numpy(zero_copy_only=False)
            key = col["key"].to_numpy(zero_copy_only=False)
            kind = col["kind"].to_numpy(zero_copy_only=False)
            pos = np.arange(n)
            new = np.ones(n, dtype=bool)
            new[1:] = (uid[1:] != uid[:-1]) | (bkt[1:] != bkt[:-1])
            gstart = np.maximum.accumulate(np.where(new, pos, 0))
            is_conv = kind == 1
            last = np.maximum.accumulate(np.where(is_conv, pos, -1))
            has = last >= gstart
            nxt = np.where(has, key[np.maximum(last, 0)], np.iinfo(np.int64).max)
            if carry is not None and carry[2] is not None and uid[0] == carry[0] and bkt[0] == carry[1]:
                first = (gstart == 0) & ~has
                nxt = np.where(first, carry[2], nxt)
            # the carry for the next batch: the last group's newest conversion key
            lg = gstart[-1]
            conv_last = last[-1] >= lg
            prev = carry[2] if (carry is not None and lg == 0 and uid[0] == carry[0] and bkt[0] == carry[1]) else None
            carry = (uid[-1], bkt[-1], int(key[last[-1]]) if conv_last else prev)
            ii = np.flatnonzero(~is_conv)
            if len(ii) == 0:
                continue
            t = col["t"].to_numpy(zero_copy_only=False)[ii].astype(np.int64)
            lab = nxt[ii] <= t + self.s_us
            x = np.log(col["dwell_ms"].to_numpy(zero_copy_only=False)[ii].astype(np.float64))
            # partials per (user, bucket, window of t): keys descend within a group, so each window's
            # impressions are one contiguous run
            u_i, b_i, w_i = uid[ii], bkt[ii], t - np.mod(t, self.window_us)
            new_i = np.ones(len(ii), dtype=bool)
            new_i[1:] = (u_i[1:] != u_i[:-1]) | (b_i[1:] != b_i[:-1]) | (w_i[1:] != w_i[:-1])
            starts = np.flatnonzero(new_i)
            sizes = np.diff(np.append(starts, len(ii)))
            npos = np.add.reduceat(lab.astype(np.int64), starts)
            nneg = sizes - npos
            with np.errstate(invalid="ignore", divide="ignore"):
                mp = np.add.reduceat(np.where(lab, x, 0.0), starts) / npos
                mn = np.add.reduceat(np.where(lab, 0.0, x), starts) / nneg
                d = x - np.where(lab, np.repeat(mp, sizes), np.repeat(mn, sizes))
            m2p = np.add.reduceat(np.where(lab, d * d, 0.0), starts)
            m2n = np.add.reduceat(np.where(lab, 0.0, d * d), starts)
            yield pa.RecordBatch.from_arrays(
                [pa.array(u_i[starts]), pa.array(b_i[starts]), pa.array(w_i[starts], pa.timestamp("us", tz="UTC")),
                 pa.array(npos), pa.array(nneg),
                 pa.array(mp, mask=(npos == 0)), pa.array(mn, mask=(nneg == 0)),
                 pa.array(m2p), pa.array(m2n)],
                names=["user_id", "skew_bucket", "window_start", "np", "nn", "mp", "mn", "m2p", "m2n"])


def window_stats_arrow(impressions: DataFrame, conversions: DataFrame, cfg: StatsConfig) -> DataFrame:
    """Candidate: eq. 1 labels and eqs. 6-8 statistics with the labelling's sort and one Arrow pass."""
    b_us = cfg.logging_buffer_s * US
    s_us = cfg.forecast_horizon_s * US
    bucket_us = cfg.skew_bucket_s * US
    t = F.unix_micros("event_ts")
    imp = impressions.select("user_id", F.floor(t / bucket_us).alias("skew_bucket"), (t - b_us).alias("key"),
                             t.alias("t"), F.col("dwell_ms").cast("long").alias("dwell_ms"), F.lit(0).alias("kind"))
    c = conversions.select("user_id", F.unix_micros("event_ts").alias("key")).where(F.col("user_id").isNotNull())
    first_b = F.floor((F.col("key") - s_us) / bucket_us)
    last_b = F.floor((F.col("key") + b_us) / bucket_us)
    conv = c.select("user_id", F.explode(F.sequence(first_b, last_b)).alias("skew_bucket"), "key",
                    F.lit(None).cast("long").alias("t"), F.lit(None).cast("long").alias("dwell_ms"),
                    F.lit(1).alias("kind"))
    rows = (imp.unionByName(conv).repartition("user_id", "skew_bucket")
            .sortWithinPartitions("user_id", "skew_bucket", F.col("key").desc(), F.col("kind").desc()))
    part = rows.mapInArrow(_LabelPartials(s_us, bucket_us, cfg.window_length_s * US), PARTIAL_SCHEMA)
    return _merge_partials(part, cfg)
