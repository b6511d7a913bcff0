"""Windowed dwell/conversion statistics per user and time window (DynamiX eqs. 1, 6, 7, 8).

Labelling (eq. 1 with the logging buffer of section 3.3): an ad impression at t gets C = 1 when the user
has a conversion c with t - b <= c <= t + s (both ends inclusive). Equivalently: the earliest conversion
at or after t - b is at or before t + s. That is one sort per user and a running minimum, with no range
join, and its cost does not grow with s:

- impressions are keyed at t - b, conversions at c; both are sorted per user by key, descending, with a
  conversion placed before an impression of equal key (so c = t - b counts);
- a running ``min`` over ``rowsBetween(unboundedPreceding, currentRow)`` gives, for each impression, the
  earliest conversion at or after its key (Spark evaluates a growing frame in O(1) per row, while an
  ``unboundedFollowing`` frame would be O(n^2) per partition).

Skew: the window is partitioned by (user, time bucket of ``skew_bucket_s``), not by user alone, so a
power user with millions of events a day is spread over 24 (for 1 h buckets) window partitions. A
conversion is copied into every bucket whose impressions can reach it (those starting within b + s
before it), so each bucket is self-contained; conversions are few next to impressions, and the copies
grow with ceil((b + s) / bucket) only.
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dynamix_spark.config import StatsConfig

US = 1_000_000  # microseconds per second


def neighbour_days(ds: str) -> list[str]:
    d = dt.date.fromisoformat(ds)
    return [(d + dt.timedelta(days=k)).isoformat() for k in (-1, 0, 1)]


def label_impressions(impressions: DataFrame, conversions: DataFrame, cfg: StatsConfig) -> DataFrame:
    """Ad impressions (user_id, event_ts, dwell_ms) -> the same with ``label`` (C of eq. 1, 0/1).

    ``conversions`` (user_id, event_ts) must cover [t - b, t + s] for every impression t: the caller
    passes the neighbouring days' conversions too.
    """
    b_us, s_us = cfg.logging_buffer_s * US, cfg.forecast_horizon_s * US
    bucket_us = cfg.skew_bucket_s * US
    imp = impressions.select(
        "user_id",
        F.unix_micros("event_ts").alias("t"),
        "dwell_ms",
    ).withColumn("key", F.col("t") - b_us)
    imp = imp.select("user_id", F.floor(F.col("key") / bucket_us).alias("bucket"), "key", "t", "dwell_ms",
                     F.lit(0).alias("kind"))
    c = conversions.select("user_id", F.unix_micros("event_ts").alias("key")).where(F.col("user_id").isNotNull())
    # An impression in bucket k has key in [k B, (k+1) B) and reaches conversions in [key, key + b + s].
    first_b = F.floor((F.col("key") - (b_us + s_us)) / bucket_us)
    last_b = F.floor(F.col("key") / bucket_us)
    conv = c.select("user_id", F.explode(F.sequence(first_b, last_b)).alias("bucket"), "key",
                    F.lit(None).cast("long").alias("t"), F.lit(None).cast("long").alias("dwell_ms"),
                    F.lit(1).alias("kind"))
    events = imp.unionByName(conv)
    w = (Window.partitionBy("user_id", "bucket")
         .orderBy(F.col("key").desc(), F.col("kind").desc())
         .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    next_conv = F.min(F.when(F.col("kind") == 1, F.col("key"))).over(w)
    labelled = events.withColumn("next_conv", next_conv).where(F.col("kind") == 0)
    label = F.when(F.col("next_conv").isNotNull() & (F.col("next_conv") <= F.col("t") + s_us), 1).otherwise(0)
    return labelled.select(
        "user_id",
        F.timestamp_micros("t").alias("event_ts"),
        "dwell_ms",
        label.alias("label"),
    )


def window_start_of(ts: Column, window_length_s: int) -> Column:
    """Start of the tumbling window holding ``ts``; windows align to UTC midnight (length divides 24 h)."""
    s = F.unix_seconds(ts)
    return F.timestamp_seconds(s - F.pmod(s, F.lit(window_length_s)))


def window_stats(labelled: DataFrame, cfg: StatsConfig) -> DataFrame:
    """Per (user, window): counts, mean log dwell by label, corr (eq. 8), w_mle (eq. 7), Bayes w, b (eq. 6).

    - ``corr`` = mean ln(dwell) | C=1 - mean ln(dwell) | C=0, null when n_pos or n_neg < ``min_count``;
    - ``pooled_std``: the equal-variance estimate sqrt((SS_pos + SS_neg) / (n_pos + n_neg - 2));
    - ``w_mle`` = corr / pooled_std (eq. 7 with S^u the pooled standard deviation);
    - eq. 6 under equal variance sigma^2 and prior pi: p(C=1 | x) = sigmoid(-w x + b) with
      w = -(mu1 - mu0) / sigma^2 and b = (mu0^2 - mu1^2) / (2 sigma^2) + ln(pi / (1 - pi)), pi being the
      window's Laplace-smoothed share of positive impressions (n_pos + 1) / (n + 2).
    """
    x = F.log(F.col("dwell_ms").cast("double"))
    pos = F.col("label") == 1
    g = labelled.withColumn("window_start", window_start_of(F.col("event_ts"), cfg.window_length_s)).groupBy(
        "user_id", "window_start").agg(
        F.sum(F.col("label")).cast("long").alias("n_pos"),
        F.sum(1 - F.col("label")).cast("long").alias("n_neg"),
        F.avg(F.when(pos, x)).alias("mean_log_dwell_pos"),
        F.avg(F.when(~pos, x)).alias("mean_log_dwell_neg"),
        F.var_samp(F.when(pos, x)).alias("_var_pos"),
        F.var_samp(F.when(~pos, x)).alias("_var_neg"),
    )
    n_pos, n_neg = F.col("n_pos"), F.col("n_neg")
    mu1, mu0 = F.col("mean_log_dwell_pos"), F.col("mean_log_dwell_neg")
    ss = (F.coalesce(F.col("_var_pos"), F.lit(0.0)) * F.greatest(n_pos - 1, F.lit(0))
          + F.coalesce(F.col("_var_neg"), F.lit(0.0)) * F.greatest(n_neg - 1, F.lit(0)))
    pooled_std = F.when((n_pos >= 1) & (n_neg >= 1) & (n_pos + n_neg > 2), F.sqrt(ss / (n_pos + n_neg - 2)))
    enough = (n_pos >= cfg.min_count) & (n_neg >= cfg.min_count)
    corr = F.when(enough, mu1 - mu0)
    var = F.col("pooled_std") * F.col("pooled_std")
    has_var = F.col("corr").isNotNull() & (F.col("pooled_std") > 0)
    prior = (n_pos + 1) / (n_pos + n_neg + 2)
    return (
        g.withColumn("window_end", F.timestamp_seconds(F.unix_seconds("window_start") + cfg.window_length_s))
        .withColumn("corr", corr)
        .withColumn("pooled_std", pooled_std)
        .withColumn("w_mle", F.when(has_var, F.col("corr") / F.col("pooled_std")))
        .withColumn("bayes_w", F.when(has_var, -F.col("corr") / var))
        .withColumn("bayes_b", F.when(has_var, (mu0 * mu0 - mu1 * mu1) / (2 * var) + F.log(prior / (1 - prior))))
        .drop("_var_pos", "_var_neg")
    )
