"""Schemas of the tables the pipeline writes (all Delta, all partitioned by ``ds`` unless stated), and the registry
of the tables by name (the names are ``schemas.names``'): the jobs, the catalog, the suites and maintenance's
configuration read it."""
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas.ebf import EBF_EXAMPLES
from schemas.names import (
    EBF_EXAMPLES_TABLE,
    QUARANTINE_TABLE,
    RUN_LEDGER_TABLE,
    RUN_METRICS_TABLE,
    USER_SEGMENTS_TABLE,
    USER_WINDOW_STATS_TABLE,
    clean_table_name,
    raw_table_name,
)
from schemas.raw import RAW_SCHEMAS

DS = StructField("ds", StringType(), False)  # 'YYYY-MM-DD', the UTC date of event_ts

# A raw source's day as the quality gates see it: the raw contract (landed Parquet, not a table in the lake).
RAW_TABLES: dict[str, StructType] = {raw_table_name(s): schema for s, schema in RAW_SCHEMAS.items()}

# Clean tables keep the raw contract's columns (with their types enforced) plus ds.
CLEAN_TABLES: dict[str, StructType] = {
    clean_table_name(src): StructType(list(schema.fields) + [DS]) for src, schema in RAW_SCHEMAS.items()
}

QUARANTINE = StructType([
    StructField("source", StringType(), False),
    StructField("reason", StringType(), False),  # reason code, see schemas.names.QUARANTINE_REASONS
    StructField("source_file", StringType(), True),
    StructField("original_row", StringType(), True),  # the row as read, as JSON
    StructField("run_id", StringType(), False),
    DS,
])

RUN_METRICS = StructType([
    StructField("run_id", StringType(), False),
    StructField("job", StringType(), False),
    StructField("ds", StringType(), False),
    StructField("source", StringType(), True),
    StructField("started_at", TimestampType(), False),
    StructField("ended_at", TimestampType(), False),
    StructField("status", StringType(), False),
    StructField("rows_in", LongType(), True),
    StructField("rows_out", LongType(), True),
    StructField("rows_quarantined", LongType(), True),
    StructField("drops", MapType(StringType(), LongType()), True),  # counted drops by reason
    StructField("quarantined", MapType(StringType(), LongType()), True),  # quarantine by reason
    StructField("epsilon", DoubleType(), True),
    StructField("epsilon_mode", StringType(), True),
    StructField("delta_versions", MapType(StringType(), LongType()), True),
    StructField("params", StringType(), True),  # JSON of the job's parameters
])

# The run ledger (``dynamix_spark.ledger``): one row per job run that published, appended after its last commit.
# ``versions`` is {table: the Delta version the run committed}; the run wrote the ``ds`` partition of each.
RUN_LEDGER = StructType([
    StructField("run_id", StringType(), False),
    StructField("job", StringType(), False),
    StructField("ds", StringType(), False),
    StructField("committed_at", TimestampType(), False),  # UTC, after the run's last commit
    StructField("versions", MapType(StringType(), LongType()), False),
])

USER_WINDOW_STATS = StructType([
    StructField("user_id", LongType(), False),
    StructField("window_start", TimestampType(), False),
    StructField("window_end", TimestampType(), False),
    StructField("n_pos", LongType(), False),
    StructField("n_neg", LongType(), False),
    StructField("mean_log_dwell_pos", DoubleType(), True),
    StructField("mean_log_dwell_neg", DoubleType(), True),
    StructField("corr", DoubleType(), True),  # eq. 8
    StructField("pooled_std", DoubleType(), True),
    StructField("w_mle", DoubleType(), True),  # eq. 7
    StructField("bayes_w", DoubleType(), True),  # eq. 6
    StructField("bayes_b", DoubleType(), True),  # eq. 6
    StructField("segment", IntegerType(), False),  # eq. 9 (0 passive, 1 active; 0..k in multi_level)
    StructField("epsilon", DoubleType(), False),
    StructField("epsilon_mode", StringType(), False),
    DS,
])

# Planted truth written by the generator beside the raw data (not partitioned).
TRUTH_ENGAGEMENT = StructType([
    StructField("user_id", LongType(), False),
    StructField("window_start", TimestampType(), False),
    StructField("engagement_type", StringType(), False),  # positive, negative, low
    StructField("activity", DoubleType(), False),  # activity multiplier (heavy tailed)
    StructField("preferred_category", LongType(), False),
    # the window's interest category: shown in organic/page impressions; conversions follow it in active windows
    StructField("interest_category", LongType(), False),
    DS,
])

# The segment per user and window (a narrow copy of user_window_stats for joins and SQL).
USER_SEGMENTS = StructType([
    StructField("user_id", LongType(), False),
    StructField("window_start", TimestampType(), False),
    StructField("window_end", TimestampType(), False),
    StructField("segment", IntegerType(), False),
    StructField("epsilon", DoubleType(), False),
    StructField("epsilon_mode", StringType(), False),
    DS,
])

# The tables the jobs publish through a quality gate (one suite each, schemas.expectations), by name.
GATED_TABLES: dict[str, StructType] = {
    **CLEAN_TABLES,
    QUARANTINE_TABLE: QUARANTINE,
    USER_WINDOW_STATS_TABLE: USER_WINDOW_STATS,
    USER_SEGMENTS_TABLE: USER_SEGMENTS,
    EBF_EXAMPLES_TABLE: EBF_EXAMPLES,
}
# Every table the pipeline itself writes under paths.lake_root (other jobs may add more; catalog registration
# takes whatever is there). maintenance.zorder_tables must name tables of it.
PIPELINE_TABLES: dict[str, StructType] = {**GATED_TABLES, RUN_METRICS_TABLE: RUN_METRICS, RUN_LEDGER_TABLE: RUN_LEDGER}
