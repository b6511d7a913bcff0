"""Names and constants of the contracts that need no Spark: importable on the training side, whose environment
has no PySpark (``schemas.ebf`` builds on these; ``schemas.raw`` checks them against its ``StructType``;
``schemas.tables`` pairs each table name with its schema).

The one spelling of the tables' names and of the reason codes denoise writes: jobs, the catalog, the suites
and maintenance read them here."""
from __future__ import annotations

from typing import Literal

# The raw sources, one folder each under ``paths.raw_root`` (``schemas.raw.RAW_SCHEMAS`` declares their columns
# and asserts the same names in the same order).
RAW_SOURCE_NAMES: tuple[str, ...] = ("ad_impressions", "conversions", "organic_impressions", "page_impressions")
# Sources every deployment must have: the windowed statistic (eqs. 1, 6-8) is ad impressions labelled by
# conversions, and every training example is an ad impression. ``paths.required_sources`` must name them;
# it chooses whether organic and page impressions are required too (by default they are optional).
STATISTICS_SOURCES: tuple[str, ...] = ("ad_impressions", "conversions")

# The 11 attributes of the ad-impression EBF: every column of the raw ``ad_impressions`` contract but
# event_id and user_id, in the contract's order (schemas/raw.py asserts that they are exactly that).
AD_EBF_ATTRIBUTES: tuple[str, ...] = (
    "event_ts", "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface",
    "media_type", "position", "device_type", "dwell_ms",
)

# A quality check's severity (``quality_results.severity``): a failed ``critical`` check blocks publishing, a
# failed ``warning`` is recorded only.
Severity = Literal["critical", "warning"]

# Tables the pipeline writes under ``paths.lake_root`` (``schemas.tables.PIPELINE_TABLES`` has their schemas), and
# the quality gates' results table beside them.
QUARANTINE_TABLE = "quarantine"
USER_WINDOW_STATS_TABLE = "user_window_stats"
USER_SEGMENTS_TABLE = "user_segments"
EBF_EXAMPLES_TABLE = "ebf_examples"
RUN_METRICS_TABLE = "run_metrics"
# One row per job run that published: the Delta version of every table it committed, appended after its last
# commit (``dynamix_spark.ledger``); readers take each (table, day) at the version of the day's last such run.
RUN_LEDGER_TABLE = "run_ledger"
QUALITY_RESULTS_TABLE = "quality_results"
_RAW_PREFIX, _CLEAN_PREFIX = "raw_", "clean_"


def clean_table_name(source: str) -> str:
    """The clean (denoised) Delta table of a raw source."""
    return f"{_CLEAN_PREFIX}{source}"


def raw_table_name(source: str) -> str:
    """A raw source's day as the quality gates name it (its landed Parquet partition, not a Delta table)."""
    return f"{_RAW_PREFIX}{source}"


def table_source(table: str) -> str:
    """The raw source of a ``raw_<source>`` or ``clean_<source>`` table name."""
    for prefix in (_RAW_PREFIX, _CLEAN_PREFIX):
        if table.startswith(prefix):
            return table[len(prefix):]
    raise ValueError(f"{table!r} is neither a raw nor a clean table name")


# Why denoise quarantines a row (``quarantine.reason``): the first violation of the contract, or an ``event_id``
# repeated with different content. The reasons in COLUMN_REASONS name the column: ``unparsable:<column>`` (a
# value that does not convert to the contract's type, ``dynamix_spark.raw_io``), ``null_key:<column>``.
UNPARSABLE = "unparsable"
NULL_KEY = "null_key"
INVALID_DWELL = "invalid_dwell"
TS_OUTSIDE_PARTITION = "ts_outside_partition"
DUPLICATE_CONFLICT = "duplicate_conflict"
QUARANTINE_REASONS: tuple[str, ...] = (UNPARSABLE, NULL_KEY, INVALID_DWELL, TS_OUTSIDE_PARTITION, DUPLICATE_CONFLICT)
COLUMN_REASONS: tuple[str, ...] = (UNPARSABLE, NULL_KEY)


def column_reason(reason: str, column: str) -> str:
    """``<reason>:<column>`` for a reason of COLUMN_REASONS."""
    assert reason in COLUMN_REASONS, reason
    return f"{reason}:{column}"


# Rows denoise drops and counts (``run_metrics.drops``): an exact duplicate, an implausible dwell.
DUPLICATE = "duplicate"
DWELL_BELOW_MIN = "dwell_below_min"
DWELL_ABOVE_MAX = "dwell_above_max"
DROP_REASONS: tuple[str, ...] = (DUPLICATE, DWELL_BELOW_MIN, DWELL_ABOVE_MAX)
