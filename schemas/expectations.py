"""Expectation suites, one per table, declared in code beside the schemas they check.

A suite is plain data (:class:`Expect`), so importing it costs nothing and does not import Great
Expectations; ``dynamix_spark.quality`` turns each :class:`Expect` into the GX 1.x expectation class named
by ``gx_type`` and runs it on the staged Spark DataFrame. Values that depend on the run (the dwell bounds,
the allowed segments, the day) come from :class:`SuiteSettings`, which the caller takes from the config
(``dynamix_spark.quality.suite_settings``), and ``ds`` when the suite is built: the suites import nothing
above ``schemas/``.

Every expectation has a stable ``name`` (what ``quality_results.expectation`` holds and a
``QualityGateError`` names) and a severity: ``critical`` blocks publishing, ``warning`` is recorded only.

Checks that need more than one table or the previous day are computed with Spark by
``dynamix_spark.quality`` and recorded the same way (the names are listed in :data:`AUDIT_CHECKS`):
``reconciliation`` (raw = clean + quarantined + counted drops), ``active_share_band``,
``drift:<statistic>`` against the previous ``ds`` partition (:data:`DRIFT_STATS`),
``type:<column>`` for nested columns (GX's Spark type check compares the outer type class only), and
``source_present`` for a raw source (its partition folder exists; a warning for an optional source that is
absent, ``paths.required_sources``: a required one fails the read before any gate).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, MapType, StringType, StructField, StructType,
                               TimestampType)

from schemas.dates import check_ds, day_bounds
from schemas.ebf import EBF_EXAMPLES, EBF_SOURCES, len_col
from schemas.names import (
    COLUMN_REASONS,
    EBF_EXAMPLES_TABLE,
    QUARANTINE_REASONS,
    QUARANTINE_TABLE,
    USER_SEGMENTS_TABLE,
    USER_WINDOW_STATS_TABLE,
    Severity,
    clean_table_name,
    raw_table_name,
    table_source,
)
from schemas.raw import CONVERSION_TYPES, KEY_COLUMNS, RAW_SCHEMAS, RAW_SOURCES, REQUIRED_DWELL_SOURCES
from schemas.tables import CLEAN_TABLES, GATED_TABLES, QUARANTINE, RAW_TABLES, USER_SEGMENTS, USER_WINDOW_STATS

# One row per expectation checked, per gate call (append-only, partitioned by ds).
QUALITY_RESULTS = StructType([
    StructField("run_id", StringType(), False),
    StructField("job", StringType(), False),
    StructField("table", StringType(), False),
    StructField("ds", StringType(), False),
    StructField("expectation", StringType(), False),  # Expect.name, e.g. unique:event_id, drift:active_share
    StructField("severity", StringType(), False),  # critical | warning
    StructField("success", BooleanType(), False),
    StructField("observed", StringType(), True),  # human-readable observed value
    StructField("details", StringType(), True),  # JSON: GX type, kwargs and result, or the audit inputs
    StructField("checked_at", TimestampType(), False),
    # The wall seconds of the gate that produced the row, repeated on each of its rows (sum one per gate:
    # run_metrics.params.gate_seconds has each run's total). Null in rows written before the column existed.
    StructField("gate_seconds", DoubleType(), True),
])

# Largest finite double: "between -MAX and MAX" is false for NaN (Spark orders NaN above every double)
# and for +/-Infinity, so it tests finiteness.
FINITE_MAX = sys.float_info.max

AUDIT_CHECKS: tuple[str, ...] = ("reconciliation", "active_share_band", "drift:<statistic>", "type:<nested column>",
                                 "source_present")


@dataclass(frozen=True)
class Expect:
    """One expectation: ``gx_type`` is a class of ``great_expectations.expectations`` taking ``kwargs``.

    ``when`` restricts it to rows meeting every ``(column, op, value)`` (op one of ``>= > <= < == !=``),
    turned into a GX row condition.
    """
    name: str
    gx_type: str
    kwargs: Mapping[str, Any]
    severity: Severity = "critical"
    when: tuple[tuple[str, str, Any], ...] = ()


@dataclass(frozen=True)
class SuiteSettings:
    """The run's settings the suites depend on (from the config: ``dynamix_spark.quality.suite_settings``)."""
    required_sources: tuple[str, ...]  # paths.required_sources: a day without rows blocks for these only
    raw_max_invalid_share: float  # quality.raw_max_invalid_share
    ts_tolerance_s: int  # denoise.ts_tolerance_s
    min_dwell_ms: int  # denoise.min_dwell_ms
    max_dwell_ms: int | None  # denoise.max_dwell_ms where the upper bound is that constant, else None
    segments: tuple[int, ...]  # the segment values eq. 9 can give
    min_count: int  # stats.min_count
    build_policies: tuple[str, ...]  # ebf.build_policies
    seq_len: Mapping[str, int]  # ebf.seq_len, per EBF source


@dataclass(frozen=True)
class DriftStat:
    """A key statistic compared with the previous day's partition.

    ``sql`` is an aggregate expression over the table's rows; ``kind`` picks the tolerance:
    ``share`` (absolute, ``quality.drift_share_tolerance``), ``log_dwell`` (absolute, nats,
    ``quality.drift_log_dwell_tolerance``) or ``row_count`` (relative, ``quality.drift_row_count_tolerance``).
    """
    name: str
    sql: str
    kind: Literal["share", "log_dwell", "row_count"]


# Every table with a suite, and the schema its columns and types are checked against.
SUITE_SCHEMAS: dict[str, StructType] = {**RAW_TABLES, **GATED_TABLES}

_ROW_COUNT = DriftStat("row_count", "count(1)", "row_count")
_ACTIVE_SHARE = DriftStat("active_share", "avg(CASE WHEN segment >= 1 THEN 1.0 ELSE 0.0 END)", "share")
DRIFT_STATS: dict[str, tuple[DriftStat, ...]] = {
    **{raw_table_name(s): (_ROW_COUNT,) for s in RAW_SOURCES},
    **{clean_table_name(s): (_ROW_COUNT,) + ((DriftStat("mean_log_dwell", "avg(ln(dwell_ms))", "log_dwell"),)
                                             if s in REQUIRED_DWELL_SOURCES else ())
       for s in RAW_SOURCES},
    QUARANTINE_TABLE: (),
    USER_WINDOW_STATS_TABLE: (
        _ROW_COUNT,
        DriftStat("mean_log_dwell_neg", "avg(mean_log_dwell_neg)", "log_dwell"),
        DriftStat("mean_log_dwell_pos", "avg(mean_log_dwell_pos)", "log_dwell"),
        _ACTIVE_SHARE,
    ),
    USER_SEGMENTS_TABLE: (_ROW_COUNT, _ACTIVE_SHARE),
    EBF_EXAMPLES_TABLE: (_ROW_COUNT, DriftStat("positive_rate", "avg(label)", "share")),
}


def nested_columns(schema: StructType) -> tuple[StructField, ...]:
    return tuple(f for f in schema.fields if isinstance(f.dataType, (ArrayType, MapType, StructType)))


def _columns(schema: StructType, exact: bool, empty: Severity = "critical") -> list[Expect]:
    """Required columns, then the type class of each flat column (nested ones: ``type:`` audit checks), then at
    least one row (``empty``: the severity of a table without rows)."""
    out = [Expect("columns", "ExpectTableColumnsToMatchSet",
                  {"column_set": [f.name for f in schema.fields], "exact_match": exact})]
    nested = {f.name for f in nested_columns(schema)}
    out += [Expect(f"type:{f.name}", "ExpectColumnValuesToBeOfType", {"column": f.name, "type_": type(f.dataType).__name__})
            for f in schema.fields if f.name not in nested]
    out.append(Expect("row_count_positive", "ExpectTableRowCountToBeBetween", {"min_value": 1}, empty))
    return out


def _not_null(*cols: str, severity: Severity = "critical", mostly: float | None = None) -> list[Expect]:
    extra = {"mostly": mostly} if mostly is not None else {}
    return [Expect(f"not_null:{c}", "ExpectColumnValuesToNotBeNull", {"column": c, **extra}, severity) for c in cols]


def _fresh(ds: str) -> Expect:
    """Every row's ds is the run's ds."""
    return Expect("freshness", "ExpectColumnValuesToBeInSet", {"column": "ds", "value_set": [ds]})


def empty_severity(source: str, required_sources: tuple[str, ...]) -> Severity:
    """A day without rows of ``source`` blocks when the source is required (``paths.required_sources``); for an
    optional source (absent or empty: a deployment without organic or page logs) it is a warning."""
    return "critical" if source in required_sources else "warning"


def _raw_suite(source: str, s: SuiteSettings, ds: str) -> list[Expect]:
    lo, hi = day_bounds(ds, s.ts_tolerance_s)
    # Raw data is noisy by design (denoise quarantines the bad rows): only the contract's columns and types
    # block; a high share of bad keys or off-day timestamps is a warning about the producer.
    out = _columns(RAW_SCHEMAS[source], exact=False, empty=empty_severity(source, s.required_sources))
    out += _not_null(*KEY_COLUMNS, severity="warning", mostly=1.0 - s.raw_max_invalid_share)
    out.append(Expect("event_ts_on_day", "ExpectColumnValuesToBeBetween",
                      {"column": "event_ts", "min_value": lo, "max_value": hi, "strict_max": True,
                       "mostly": 1.0 - s.raw_max_invalid_share}, "warning"))
    return out


def _clean_suite(source: str, s: SuiteSettings, ds: str) -> list[Expect]:
    lo, hi = day_bounds(ds, s.ts_tolerance_s)
    table = clean_table_name(source)
    out = _columns(CLEAN_TABLES[table], exact=True, empty=empty_severity(source, s.required_sources))
    out += _not_null(*KEY_COLUMNS)
    out.append(Expect("unique:event_id", "ExpectColumnValuesToBeUnique", {"column": "event_id"}))
    out.append(_fresh(ds))
    out.append(Expect("event_ts_on_day", "ExpectColumnValuesToBeBetween",
                      {"column": "event_ts", "min_value": lo, "max_value": hi, "strict_max": True}))
    if source in REQUIRED_DWELL_SOURCES:
        # Without a constant upper bound (it varies by surface or user), only the lower bound is checked.
        upper = {"max_value": s.max_dwell_ms} if s.max_dwell_ms is not None else {}
        out += _not_null("dwell_ms")
        out.append(Expect("dwell_in_bounds", "ExpectColumnValuesToBeBetween",
                          {"column": "dwell_ms", "min_value": s.min_dwell_ms, **upper}))
    if source == "conversions":
        out.append(Expect("conversion_type_known", "ExpectColumnValuesToBeInSet",
                          {"column": "conversion_type", "value_set": list(CONVERSION_TYPES)}, "warning"))
    return out


# Exactly the reasons denoise writes, a column named after those of COLUMN_REASONS.
_QUARANTINE_REASON = "^(" + "|".join(f"{r}:.+" if r in COLUMN_REASONS else r for r in QUARANTINE_REASONS) + ")$"


def _quarantine_suite(ds: str) -> list[Expect]:
    out = _columns(QUARANTINE, exact=True)
    # A day without quarantined rows is a good day, not an empty table to block.
    out = [e for e in out if e.name != "row_count_positive"]
    out += _not_null("source", "reason", "run_id")
    out.append(Expect("source_known", "ExpectColumnValuesToBeInSet", {"column": "source", "value_set": list(RAW_SOURCES)}))
    out.append(Expect("reason_known", "ExpectColumnValuesToMatchRegex", {"column": "reason", "regex": _QUARANTINE_REASON}))
    out.append(_fresh(ds))
    return out


def _window_suite(schema: StructType, s: SuiteSettings, ds: str) -> list[Expect]:
    out = _columns(schema, exact=True)
    out += _not_null("user_id", "window_start", "window_end", "segment", "epsilon")
    out.append(Expect("unique:user_id,window_start", "ExpectCompoundColumnsToBeUnique",
                      {"column_list": ["user_id", "window_start"]}))
    out.append(Expect("window_end_after_start", "ExpectColumnPairValuesAToBeGreaterThanB",
                      {"column_A": "window_end", "column_B": "window_start"}))
    out.append(Expect("segment_allowed", "ExpectColumnValuesToBeInSet",
                      {"column": "segment", "value_set": list(s.segments)}))
    out.append(Expect("epsilon_non_negative", "ExpectColumnValuesToBeBetween", {"column": "epsilon", "min_value": 0.0}))
    out.append(_fresh(ds))
    return out


def _stats_suite(s: SuiteSettings, ds: str) -> list[Expect]:
    out = _window_suite(USER_WINDOW_STATS, s, ds)
    n = s.min_count
    enough = (("n_pos", ">=", n), ("n_neg", ">=", n))
    out += _not_null("n_pos", "n_neg")
    out += [
        Expect("n_pos_non_negative", "ExpectColumnValuesToBeBetween", {"column": "n_pos", "min_value": 0}),
        Expect("n_neg_non_negative", "ExpectColumnValuesToBeBetween", {"column": "n_neg", "min_value": 0}),
        # eq. 8 has a corr for every window with min_count positives and negatives, and it is finite.
        Expect("corr_present", "ExpectColumnValuesToNotBeNull", {"column": "corr"}, when=enough),
        Expect("corr_finite", "ExpectColumnValuesToBeBetween",
               {"column": "corr", "min_value": -FINITE_MAX, "max_value": FINITE_MAX}, when=enough),
    ]
    return out


def _ebf_suite(s: SuiteSettings, ds: str) -> list[Expect]:
    out = _columns(EBF_EXAMPLES, exact=True)
    out += _not_null("user_id", "event_ts_us", "label", "policy", "segment")
    out += [
        Expect("label_binary", "ExpectColumnValuesToBeInSet", {"column": "label", "value_set": [0, 1]}),
        Expect("segment_allowed", "ExpectColumnValuesToBeInSet",
               {"column": "segment", "value_set": list(s.segments)}),
        Expect("policy_built", "ExpectColumnValuesToBeInSet",
               {"column": "policy", "value_set": list(s.build_policies)}),
        # No leakage: the segment an example uses comes from a window that ended by the impression.
        Expect("segment_window_before_impression", "ExpectColumnPairValuesAToBeGreaterThanB",
               {"column_A": "event_ts_us", "column_B": "segment_window_end_us", "or_equal": True,
                "ignore_row_if": "either_value_is_missing"}),
        _fresh(ds),
    ]
    out += [Expect(f"len_in_range:{src}", "ExpectColumnValuesToBeBetween",
                   {"column": len_col(src), "min_value": 0, "max_value": s.seq_len[src]}) for src in EBF_SOURCES]
    return out


def suite(table: str, settings: SuiteSettings, ds: str) -> tuple[Expect, ...]:
    """The expectations of ``table`` for the run of ``ds`` under ``settings``."""
    check_ds(ds)  # a date, nothing else
    if table in RAW_TABLES:
        exps = _raw_suite(table_source(table), settings, ds)
    elif table in CLEAN_TABLES:
        exps = _clean_suite(table_source(table), settings, ds)
    elif table == QUARANTINE_TABLE:
        exps = _quarantine_suite(ds)
    elif table == USER_WINDOW_STATS_TABLE:
        exps = _stats_suite(settings, ds)
    elif table == USER_SEGMENTS_TABLE:
        exps = _window_suite(USER_SEGMENTS, settings, ds)
    elif table == EBF_EXAMPLES_TABLE:
        exps = _ebf_suite(settings, ds)
    else:
        raise KeyError(f"no expectation suite for table {table!r} (known: {sorted(SUITE_SCHEMAS)})")
    names = [e.name for e in exps]
    assert len(names) == len(set(names)), f"duplicate expectation names in {table}: {names}"
    return tuple(exps)
