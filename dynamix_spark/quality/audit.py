"""Audit checks computed with Spark: the checks that need inputs other than the staged table's rows.

Reconciliation (raw = clean + quarantined + drops), the active-share band of ``user_window_stats``, drift of
``schemas.expectations.DRIFT_STATS`` against the previous ``ds`` and the nested columns' types are computed
here into a one-row frame (:class:`_Audit`) that the GX adapter validates like any table, so they are stored and
rendered like the suites' checks. Also the config-to-suite settings (:func:`suite_settings`) and
``source_present`` (:func:`source_present_check`).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dynamix_spark.config import Config
from dynamix_spark.delta_io import is_delta, table_path
from dynamix_spark.ledger import published_run
from dynamix_spark.quality.results import CheckResult, Reconciliation, recorded_drift_rows
from schemas.dates import previous_day
from schemas.expectations import DRIFT_STATS, SUITE_SCHEMAS, Expect, SuiteSettings, nested_columns
from schemas.names import QUALITY_RESULTS_TABLE, USER_WINDOW_STATS_TABLE, table_source
from schemas.tables import RAW_TABLES


def suite_settings(cfg: Config) -> SuiteSettings:
    """The values of ``cfg`` the suites depend on (``schemas.expectations`` imports nothing above ``schemas/``)."""
    from dynamix_spark.segmentation import allowed_segments

    d = cfg.denoise
    return SuiteSettings(
        required_sources=tuple(cfg.paths.required_sources), raw_max_invalid_share=cfg.quality.raw_max_invalid_share,
        ts_tolerance_s=d.ts_tolerance_s, min_dwell_ms=d.min_dwell_ms,
        # The upper bound is only a constant in the fixed mode; the other modes' bounds vary by surface or user
        # (and may exceed max_dwell_ms), so only the lower bound is checked there.
        max_dwell_ms=d.max_dwell_ms if d.upper_mode == "fixed" else None,
        segments=allowed_segments(cfg.segmentation), min_count=cfg.stats.min_count,
        build_policies=tuple(cfg.ebf.build_policies), seq_len=dict(cfg.ebf.seq_len))


def load_previous_partition(spark: SparkSession, table: str, ds: str, cfg: Config) -> DataFrame | None:
    """The published partition of the day before ``ds`` (raw: the landed Parquet), or None if there is none."""
    prev = previous_day(ds)
    if table in RAW_TABLES:
        from dynamix_spark.raw_io import RawInputError, list_parquet_files, partition_path

        try:
            files = list_parquet_files(spark, partition_path(cfg.paths.raw_root, table_source(table), prev))
        except RawInputError:
            return None
        return spark.read.parquet(*files) if files else None
    path = table_path(cfg.paths.lake_root, table)
    if not is_delta(spark, path):
        return None
    return spark.read.format("delta").load(path).where(F.col("ds") == prev)


@functools.lru_cache(maxsize=8)
def _recorded_day(spark: SparkSession, lake_root: str, job: str, ds: str, reader: str) -> tuple[str | None, dict]:
    """(run_id, {table: {statistic: value}}): the drift statistics every gate of the run of ``job`` that published
    ``ds`` recorded in ``quality_results`` (the run ledger's latest row of ``job`` and ``ds``; a run that never
    published, e.g. one its gates blocked, has none). (None, {}) without such a run. One query of the ledger per
    ``reader`` (the run asking: its gates share it), and one of ``quality_results`` unless this process recorded
    that run's rows itself (:func:`~dynamix_spark.quality.results.recorded_drift_rows`: the day before in a
    backfill or a nightly)."""
    results = table_path(lake_root, QUALITY_RESULTS_TABLE)
    run_id = published_run(spark, lake_root, job, ds) if is_delta(spark, results) else None
    if run_id is None:
        return None, {}
    rows = recorded_drift_rows(lake_root, run_id, ds)
    if rows is None:
        rows = [(r["table"], r["expectation"], r["details"]) for r in
                spark.read.format("delta").load(results)
                .where((F.col("ds") == ds) & (F.col("run_id") == run_id) & F.col("expectation").startswith("drift"))
                .select("table", "expectation", "details").collect()]
    out: dict[str, dict] = {}
    for table, expectation, details_json in rows:
        details = json.loads(details_json or "{}")
        if expectation == "drift":  # skipped (no day before it): today's statistics in its details
            out.setdefault(table, {}).update(details.get("today") or {})
        else:  # drift:<statistic>, checked (inputs) or skipped for a non-finite value (details)
            values = details.get("inputs", details)
            if "today" in values:
                out.setdefault(table, {})[expectation.split(":", 1)[1]] = values["today"]
    return run_id, out


def recorded_statistics(spark: SparkSession, cfg: Config, job: str, table: str, ds: str, reader: str
                        ) -> tuple[str, dict[str, Any]] | None:
    """(run_id, statistics): ``table``'s drift statistics of ``ds`` as the gate of the run that published ``ds``
    recorded them, or None where that run recorded none of some statistic (a lake from before they were
    recorded, a table that run did not gate): the caller then reads the partition."""
    run_id, tables = _recorded_day(spark, cfg.paths.lake_root, job, ds, reader)
    stats = tables.get(table, {})
    if run_id is None or any(s.name not in stats for s in DRIFT_STATS[table]):
        return None
    return run_id, {s.name: stats[s.name] for s in DRIFT_STATS[table]}


def _count(x: DataFrame | int) -> int:
    return int(x) if isinstance(x, int) else int(x.count())


def _stats(df: DataFrame, table: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One aggregate over ``df``: the table's drift statistics, its row count and ``extra``."""
    exprs = {s.name: s.sql for s in DRIFT_STATS[table]}
    exprs.setdefault("row_count", "count(1)")
    exprs.update(extra or {})
    row = df.agg(*[F.expr(sql).cast("double").alias(name) for name, sql in exprs.items()]).first()
    return row.asDict()


def _finite(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


@dataclass
class _Audit:
    metrics: dict[str, Any] = field(default_factory=dict)  # column -> value of the one-row audit frame
    expects: list[Expect] = field(default_factory=list)
    observed: dict[str, str] = field(default_factory=dict)  # expectation -> readable observed value
    inputs: dict[str, Any] = field(default_factory=dict)  # expectation -> the numbers behind it
    direct: list[CheckResult] = field(default_factory=list)  # results not run through GX (skipped, errors)

    def add(self, name: str, column: str, value: Any, expect: Expect, observed: str, inputs: Mapping[str, Any]):
        self.metrics[column] = value
        self.expects.append(expect)
        self.observed[name] = observed
        self.inputs[name] = dict(inputs)

    def frame(self) -> Any:
        """The metrics as a one-row pandas frame (numbers as float, type names as str)."""
        import pandas as pd

        return pd.DataFrame([{k: v if isinstance(v, str) else float(v) for k, v in self.metrics.items()}])


def _audit(spark: SparkSession, df: DataFrame, table: str, ds: str, cfg: Config,
           reconciliation: Reconciliation | None, previous: DataFrame | None, load_previous: bool,
           row_count: int | None = None, job: str | None = None, run_id: str | None = None) -> _Audit:
    """The audit checks of ``df``. ``row_count``: ``df``'s rows as the suite's GX run counted them; when the day's
    statistics need no more than that count (the raw tables, ``clean_conversions``, ``quarantine``), no Spark
    aggregation of ``df`` runs here.

    Drift compares today's statistics with the previous day's: ``previous`` when given; else, with
    ``load_previous``, the statistics the gate of the run of ``job`` that published the previous day recorded
    (:func:`recorded_statistics`: no scan of that day), or where it recorded none, the previous partition
    (:func:`load_previous_partition`). Every gate records today's statistics (in its drift rows, or in the
    skipped ``drift`` row of a day without a previous one) for the next day's gate."""
    a = _Audit()
    q = cfg.quality
    schema = SUITE_SCHEMAS[table]

    for f in nested_columns(schema):
        want = f.dataType.simpleString()
        got = df.schema[f.name].dataType.simpleString() if f.name in df.columns else "<missing>"
        a.add(f"type:{f.name}", f"type__{f.name}", got,
              Expect(f"type:{f.name}", "ExpectColumnValuesToBeInSet", {"column": f"type__{f.name}", "value_set": [want]}),
              f"{got} (expected {want})", {"expected": want, "observed": got})

    extra = {}
    if table == USER_WINDOW_STATS_TABLE:
        extra = {"active_share_with_corr": "avg(CASE WHEN segment >= 1 THEN 1.0 ELSE 0.0 END) FILTER (WHERE corr IS NOT NULL)",
                 "windows_with_corr": "count(corr)"}
    needed = {s.name for s in DRIFT_STATS[table]} | set(extra)
    try:
        if needed <= {"row_count"} and row_count is not None:
            today = {"row_count": float(row_count)}  # count(1), which GX has just computed: no second scan
        elif not needed and reconciliation is None:
            today = {}  # nothing below reads today's statistics
        else:
            today = _stats(df, table, extra)
    except AnalysisException as e:  # a missing column: the GX column checks say which; block here too
        a.direct.append(CheckResult("audit_statistics", "critical", False, f"error: {str(e).splitlines()[0][:300]}",
                                    {"error": str(e)[:2000]}))
        return a

    if reconciliation is not None:
        raw, quarantined = _count(reconciliation.raw), _count(reconciliation.quarantined)
        drops = {str(k): int(v) for k, v in reconciliation.drops.items()}
        clean = int(today["row_count"])  # the staged rows
        diff = raw - (clean + quarantined + sum(drops.values()))
        a.add("reconciliation", "reconciliation_diff", diff,
              Expect("reconciliation", "ExpectColumnValuesToBeBetween",
                     {"column": "reconciliation_diff", "min_value": 0, "max_value": 0}),
              f"raw={raw} vs clean={clean} + quarantined={quarantined} + drops={sum(drops.values())} (diff {diff})",
              {"raw": raw, "clean": clean, "quarantined": quarantined, "drops": drops, "diff": diff})

    if table == USER_WINDOW_STATS_TABLE:
        target, tol = cfg.segmentation.target_active_fraction, q.active_share_tolerance
        share = today["active_share_with_corr"]
        severity = "critical" if cfg.segmentation.epsilon_mode == "target_active_fraction" else "warning"
        lo, hi = target - tol, target + tol
        # No window with a corr: -1 fails the band (GX's pandas engine would skip a NaN as missing).
        a.add("active_share_band", "active_share_with_corr", share if share is not None else -1.0,
              Expect("active_share_band", "ExpectColumnValuesToBeBetween",
                     {"column": "active_share_with_corr", "min_value": lo, "max_value": hi}, severity),
              (f"{share:.4f} of {int(today['windows_with_corr'])} windows with a corr (band [{lo:.4f}, {hi:.4f}])"
               if share is not None else "no window has a corr"),
              {"active_share_with_corr": share, "windows_with_corr": today["windows_with_corr"], "target": target,
               "tolerance": tol, "epsilon_mode": cfg.segmentation.epsilon_mode})

    stats = DRIFT_STATS[table]
    if stats:
        before, source = None, "given"
        if previous is None and load_previous:
            recorded = recorded_statistics(spark, cfg, job, table, previous_day(ds), run_id) if job and run_id else None
            if recorded is not None:
                before, source = recorded[1], f"recorded by run {recorded[0]}"
            else:
                previous, source = load_previous_partition(spark, table, ds, cfg), "partition"
        if before is None and previous is not None:
            before = _stats(previous, table)
        if before is None or not before.get("row_count"):
            a.direct.append(CheckResult("drift", q.drift_severity, True,
                                        f"skipped: no previous partition ds={previous_day(ds)}",
                                        {"previous_ds": previous_day(ds), "today": {s.name: today.get(s.name) for s in stats}}))
        else:
            for s in stats:
                now, prev = today.get(s.name), before.get(s.name)
                name = f"drift:{s.name}"
                if not (_finite(prev) and _finite(now)):
                    a.direct.append(CheckResult(name, q.drift_severity, True, f"skipped: today={now}, previous={prev}",
                                                {"today": now, "previous": prev, "previous_from": source}))
                    continue
                if s.kind == "row_count":
                    tol = q.drift_row_count_tolerance
                    lo, hi = prev * (1 - tol), prev * (1 + tol)
                else:
                    tol = q.drift_share_tolerance if s.kind == "share" else q.drift_log_dwell_tolerance
                    lo, hi = prev - tol, prev + tol
                a.add(name, f"drift__{s.name}", now,
                      Expect(name, "ExpectColumnValuesToBeBetween",
                             {"column": f"drift__{s.name}", "min_value": lo, "max_value": hi}, q.drift_severity),
                      f"{now:.6g} vs previous {prev:.6g} (allowed [{lo:.6g}, {hi:.6g}])",
                      {"today": now, "previous": prev, "previous_ds": previous_day(ds), "previous_from": source,
                       "kind": s.kind, "tolerance": tol})
    return a



def source_present_check(source: str, path: str, present: bool, required: bool) -> CheckResult:
    """``source_present``: whether the day's raw partition folder of ``source`` exists. Absent is a warning for
    an optional source (``paths.required_sources``); a required one never gets here (the read fails first)."""
    observed = f"{path} exists" if present else f"absent: no raw partition {path} (optional source: empty sequences)"
    return CheckResult("source_present", "critical" if required else "warning", present, observed,
                       {"source": source, "path": path, "present": present, "required": required})
