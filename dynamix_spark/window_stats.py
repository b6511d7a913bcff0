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

Skew: the window is partitioned by (user, time bucket of ``skew_bucket_s`` holding t), not by user
alone, so a power user with millions of events a day is spread over 24 (for 1 h buckets) window
partitions. A conversion is copied into every bucket whose impressions can reach it (t in [c - s, c + b]),
so each bucket is self-contained; conversions are few next to impressions, and the copies grow with
ceil((b + s) / bucket) only.

One shuffle of the impressions: the statistics aggregate first per (user, bucket, window), which the
labelling's partitioning already satisfies, and only those small partial aggregates move again.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dynamix_spark.config import StatsConfig

US = 1_000_000  # microseconds per second


def label_impressions(
    impressions: DataFrame,
    conversions: DataFrame,
    cfg: StatsConfig,
    *,
    keys: tuple[str, ...] = ("user_id",),
    horizon_s: int | None = None,
    keep: tuple[str, ...] = ("dwell_ms",),
) -> DataFrame:
    """Ad impressions -> ``keys + (event_ts,) + keep + (label, skew_bucket)``; ``label`` is C of eq. 1.

    An impression at t of a key (a user; a (user, ad) pair for ad-level labels) gets 1 when the same key
    has a conversion in [t - b, t + s] (s = ``horizon_s``, default the forecast horizon). ``conversions``
    (keys, event_ts) must cover that interval for every impression: callers pass neighbouring days too.
    ``skew_bucket`` (floor(t / skew_bucket_s)) is returned so that aggregations can reuse the partitioning.
    """
    b_us = cfg.logging_buffer_s * US
    s_us = (cfg.forecast_horizon_s if horizon_s is None else horizon_s) * US
    bucket_us = cfg.skew_bucket_s * US
    k = list(keys)
    t = F.unix_micros("event_ts")
    imp = impressions.select(
        *k, F.floor(t / bucket_us).alias("skew_bucket"), (t - b_us).alias("key"), t.alias("t"),
        *[F.col(c) for c in keep], F.lit(0).alias("kind"))
    c = conversions.select(*k, F.unix_micros("event_ts").alias("key"))
    for col in k:
        c = c.where(F.col(col).isNotNull())
    # Impressions are bucketed by t; one with t in [kB, (k+1)B) reaches conversions in [t - b, t + s], so
    # a conversion at c is copied into the buckets from floor((c - s) / B) to floor((c + b) / B).
    first_b = F.floor((F.col("key") - s_us) / bucket_us)
    last_b = F.floor((F.col("key") + b_us) / bucket_us)
    pad = [F.lit(None).cast(impressions.schema[col].dataType).alias(col) for col in keep]
    conv = c.select(*k, F.explode(F.sequence(first_b, last_b)).alias("skew_bucket"), "key",
                    F.lit(None).cast("long").alias("t"), *pad, F.lit(1).alias("kind"))
    events = imp.unionByName(conv)
    w = (Window.partitionBy(*k, "skew_bucket")
         .orderBy(F.col("key").desc(), F.col("kind").desc())
         .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    next_conv = F.min(F.when(F.col("kind") == 1, F.col("key"))).over(w)
    labelled = events.withColumn("next_conv", next_conv).where(F.col("kind") == 0)
    label = F.when(F.col("next_conv").isNotNull() & (F.col("next_conv") <= F.col("t") + s_us), 1).otherwise(0)
    return labelled.select(
        *k,
        F.timestamp_micros("t").alias("event_ts"),
        *keep,
        label.alias("label"),
        "skew_bucket",
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
    keyed = labelled.withColumn("window_start", window_start_of(F.col("event_ts"), cfg.window_length_s))
    if "skew_bucket" not in labelled.columns:
        keyed = keyed.withColumn("skew_bucket", F.lit(0))
    # Level 1 per (user, skew bucket, window): grouping by the labelling window's own partition keys
    # reuses its shuffle (no exchange of the impressions). A bucket lies in one window (the bucket length
    # divides the window length). Level 2 merges the few bucket rows per window (Chan et al.'s pairwise
    # mean / M2 update), so only small partial aggregates are shuffled a second time.
    part = keyed.groupBy("user_id", "skew_bucket", "window_start").agg(
        F.sum(F.col("label")).cast("long").alias("np"),
        F.sum(1 - F.col("label")).cast("long").alias("nn"),
        F.avg(F.when(pos, x)).alias("mp"),
        F.avg(F.when(~pos, x)).alias("mn"),
        (F.coalesce(F.var_pop(F.when(pos, x)), F.lit(0.0)) * F.sum(F.col("label"))).alias("m2p"),
        (F.coalesce(F.var_pop(F.when(~pos, x)), F.lit(0.0)) * F.sum(1 - F.col("label"))).alias("m2n"),
    )

    return _merge_partials(part, cfg)


def _merge_partials(part: DataFrame, cfg: StatsConfig) -> DataFrame:
    """Partial statistics per (user, bucket, window) -> the window's statistics (level 2 of
    :func:`window_stats`)."""

    def merged(n: str, m: str, m2: str, prefix: str) -> list[Column]:
        total = F.sum(n)
        mean = F.sum(F.col(n) * F.col(m)) / total
        # M2 = sum M2_i + sum n_i m_i^2 - n mean^2 (the between-bucket part of the pooled variance)
        between = F.sum(F.col(n) * F.col(m) * F.col(m)) - total * mean * mean
        return [mean.alias(f"mean_log_dwell_{prefix}"),
                (F.sum(m2) + F.greatest(between, F.lit(0.0))).alias(f"_m2_{prefix}")]

    g = part.groupBy("user_id", "window_start").agg(
        F.sum("np").cast("long").alias("n_pos"),
        F.sum("nn").cast("long").alias("n_neg"),
        *merged("np", "mp", "m2p", "pos"),
        *merged("nn", "mn", "m2n", "neg"),
    )
    n_pos, n_neg = F.col("n_pos"), F.col("n_neg")
    mu1, mu0 = F.col("mean_log_dwell_pos"), F.col("mean_log_dwell_neg")
    ss = F.coalesce(F.col("_m2_pos"), F.lit(0.0)) + F.coalesce(F.col("_m2_neg"), F.lit(0.0))
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
        .drop("_m2_pos", "_m2_neg")
    )
