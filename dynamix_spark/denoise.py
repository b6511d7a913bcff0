"""Denoising raw logs into clean tables (DynamiX 3.3): contract checks, dedupe, dwell-time bounds.

Every raw row ends in exactly one of three places, so that ``raw = clean + quarantined + dropped`` holds
per source and ``ds``:
- ``clean``: the row is kept;
- quarantine (``q``), with a reason: it breaks the contract (``unparsable:<col>``, ``null_key:<col>``,
  ``invalid_dwell``, ``ts_outside_partition``) or repeats an ``event_id`` with different content
  (``duplicate_conflict``);
- a counted drop (``drop``), with a reason: an exact duplicate (``duplicate``) or an implausible dwell
  (``dwell_below_min``: under 250 ms is not an impression by the EBF definition; ``dwell_above_max``).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dynamix_spark.config import DenoiseConfig
from schemas.names import (
    DUPLICATE,
    DUPLICATE_CONFLICT,
    DWELL_ABOVE_MAX,
    DWELL_BELOW_MIN,
    INVALID_DWELL,
    NULL_KEY,
    TS_OUTSIDE_PARTITION,
    column_reason,
)
from schemas.raw import KEY_COLUMNS, RAW_SCHEMAS, REQUIRED_DWELL_SOURCES

# A row's status: CLEAN, "q:<reason>" (schemas.names.QUARANTINE_REASONS) or "drop:<reason>" (DROP_REASONS).
CLEAN = "clean"


@dataclass(frozen=True)
class Outcome:
    """Row counts of one source and day by status (``clean``, ``q:<reason>``, ``drop:<reason>``)."""

    counts: dict[str, int]

    @property
    def rows_in(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> int:
        return self.counts.get(CLEAN, 0)

    def by_kind(self, kind: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(self.counts.items()) if k.startswith(kind + ":")}

    @property
    def quarantined(self) -> int:
        return sum(self.by_kind("q").values())


def _row_reason(source: str, ds: str, tolerance_s: int) -> Column:
    """First contract violation of a typed row, or null (order: parse, keys, dwell, timestamp)."""
    reason = F.col("_reason")
    for k in KEY_COLUMNS:
        reason = F.coalesce(reason, F.when(F.col(k).isNull(), F.lit(column_reason(NULL_KEY, k))))
    if source in REQUIRED_DWELL_SOURCES:
        bad_dwell = F.col("dwell_ms").isNull() | (F.col("dwell_ms") < 0)
        reason = F.coalesce(reason, F.when(bad_dwell, F.lit(INVALID_DWELL)))
    day_start = F.unix_seconds(F.to_timestamp(F.lit(ds)))
    ts = F.unix_seconds("event_ts")
    outside = (ts < day_start - tolerance_s) | (ts >= day_start + 86_400 + tolerance_s)
    return F.coalesce(reason, F.when(outside, F.lit(TS_OUTSIDE_PARTITION)))


def _content_hash(source: str) -> Column:
    cols = [F.col(f.name) for f in RAW_SCHEMAS[source].fields]
    return F.xxhash64(*cols)


def dedupe_status(valid: DataFrame, source: str) -> DataFrame:
    """Keep one row per ``event_id``: copies equal to it are dropped, differing ones quarantined.

    The kept row is the earliest ``event_ts`` (ties broken by content hash), so the choice does not
    depend on file order.
    """
    w = Window.partitionBy("event_id").orderBy(F.col("event_ts").asc(), F.col("_hash").asc())
    df = valid.withColumn("_hash", _content_hash(source))
    df = df.withColumn("_rn", F.row_number().over(w)).withColumn("_first_hash", F.first("_hash").over(w))
    status = (F.when(F.col("_rn") == 1, F.lit(CLEAN))
              .when(F.col("_hash") == F.col("_first_hash"), F.lit(f"drop:{DUPLICATE}"))
              .otherwise(F.lit(f"q:{DUPLICATE_CONFLICT}")))
    return df.withColumn("_status", status).drop("_rn", "_first_hash", "_hash")


def with_upper_bound(df: DataFrame, cfg: DenoiseConfig) -> DataFrame:
    """Add ``_max_dwell``, the upper dwell bound (ms) of each row, following ``cfg.upper_mode``.

    - ``fixed``: ``max_dwell_ms``;
    - ``surface_quantile``: the day's ``surface_quantile`` of plausible dwells per surface (one global
      quantile for sources without a surface);
    - ``user_robust``: exp(median + k * 1.4826 * MAD) of the user's ln(dwell) for users with at least
      ``user_min_events`` plausible events, ``max_dwell_ms`` for the others.
    """
    if cfg.upper_mode == "fixed":
        return df.withColumn("_max_dwell", F.lit(float(cfg.max_dwell_ms)))
    plausible = df.where(F.col("dwell_ms") >= cfg.min_dwell_ms)
    if cfg.upper_mode == "surface_quantile":
        key = "surface" if "surface" in df.columns else None
        agg = F.percentile_approx(F.col("dwell_ms").cast("double"), cfg.surface_quantile, 10_000).alias("_max_dwell")
        if key:
            bounds = plausible.groupBy(key).agg(agg)
            return df.join(F.broadcast(bounds), key, "left").fillna({"_max_dwell": float(cfg.max_dwell_ms)})
        bound = plausible.agg(agg).first()[0]
        return df.withColumn("_max_dwell", F.lit(float(bound if bound is not None else cfg.max_dwell_ms)))
    # user_robust
    logd = F.log(F.col("dwell_ms").cast("double"))
    med = plausible.groupBy("user_id").agg(
        F.percentile_approx(logd, 0.5, 1000).alias("_med"), F.count("*").alias("_n"))
    dev = plausible.join(med, "user_id").groupBy("user_id", "_med", "_n").agg(
        F.percentile_approx(F.abs(logd - F.col("_med")), 0.5, 1000).alias("_mad"))
    bound = F.when(F.col("_n") >= cfg.user_min_events,
                   F.exp(F.col("_med") + cfg.user_mad_k * 1.4826 * F.col("_mad")))
    users = dev.select("user_id", bound.alias("_max_dwell"))
    return df.join(users, "user_id", "left").fillna({"_max_dwell": float(cfg.max_dwell_ms)})


def classify(raw: DataFrame, source: str, ds: str, cfg: DenoiseConfig) -> DataFrame:
    """Typed raw rows (``raw_io.read_raw_partition``) -> the same rows with ``_status``."""
    df = raw.withColumn("_reason", _row_reason(source, ds, cfg.ts_tolerance_s))
    invalid = df.where(F.col("_reason").isNotNull()).withColumn("_status", F.concat(F.lit("q:"), "_reason"))
    valid = dedupe_status(df.where(F.col("_reason").isNull()), source)
    if source in REQUIRED_DWELL_SOURCES:
        kept = valid.where(F.col("_status") == CLEAN)
        rest = valid.where(F.col("_status") != CLEAN)
        kept = with_upper_bound(kept, cfg)
        status = (F.when(F.col("dwell_ms") < cfg.min_dwell_ms, F.lit(f"drop:{DWELL_BELOW_MIN}"))
                  .when(F.col("dwell_ms") > F.col("_max_dwell"), F.lit(f"drop:{DWELL_ABOVE_MAX}"))
                  .otherwise(F.lit(CLEAN)))
        kept = kept.withColumn("_status", status).drop("_max_dwell")
        valid = kept.unionByName(rest)
    return invalid.unionByName(valid)


def quarantine_rows(classified: DataFrame, source: str, ds: str, run_id: str) -> DataFrame:
    """Rows bound for the ``quarantine`` table (schema ``schemas.tables.QUARANTINE``)."""
    contract_cols = [F.col(f.name) for f in RAW_SCHEMAS[source].fields]
    q = classified.where(F.col("_status").startswith("q:"))
    return q.select(
        F.lit(source).alias("source"),
        F.substring(F.col("_status"), 3, 200).alias("reason"),
        F.col("_source_file").alias("source_file"),
        F.coalesce(F.col("_original"), F.to_json(F.struct(*contract_cols))).alias("original_row"),
        F.lit(run_id).alias("run_id"),
        F.lit(ds).alias("ds"),
    )


def clean_rows(classified: DataFrame, source: str, ds: str) -> DataFrame:
    cols = [f.name for f in RAW_SCHEMAS[source].fields]
    return classified.where(F.col("_status") == CLEAN).select(*cols, F.lit(ds).alias("ds"))
