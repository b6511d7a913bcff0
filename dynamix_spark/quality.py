"""Quality gates for write-audit-publish: validate a staged DataFrame before it is committed.

A job stages its output (persisted), validates it with :func:`gate` and publishes it only through
:func:`publish_or_fail`, so a failed critical expectation raises :class:`QualityGateError` and the Delta
table keeps its previous version::

    staged = conform(out, USER_WINDOW_STATS).persist(StorageLevel.MEMORY_AND_DISK)
    result = gate(spark, staged, "user_window_stats", ds, cfg, job=JOB, run_id=run_id)
    version = publish_or_fail(result, lambda: overwrite_partition(staged, path, ds, USER_WINDOW_STATS, info))

The jobs do this through :class:`dynamix_spark.staged_write.StagedWrite` (several tables, all or none).

Each table's suite is declared in ``schemas/expectations.py`` and run with Great Expectations 1.x on the
Spark DataFrame itself (a Spark datasource with a whole-dataframe batch definition: no pandas copy).
Checks that need other inputs are computed with Spark here, put in a one-row audit DataFrame and
validated by GX as well, so they are stored and rendered like the others:

- ``reconciliation``: raw rows = clean + quarantined + counted drops (:class:`Reconciliation`);
- ``active_share_band``: the share of user windows with a corr that are active is within
  ``segmentation.target_active_fraction`` +/- ``quality.active_share_tolerance`` (critical in the
  ``target_active_fraction`` mode, which promises that share; a warning in the other modes);
- ``drift:<statistic>``: key statistics against the previous ``ds`` partition (``schemas.expectations.DRIFT_STATS``;
  severity ``quality.drift_severity``, a warning by default);
- ``type:<column>`` for nested columns (GX's Spark type check compares only the outer type class).

Every gate call appends one row per check to the Delta table ``quality_results`` (schema
``schemas.expectations.QUALITY_RESULTS``) and renders GX Data Docs under ``quality.docs_dir``.
One ephemeral GX context is created per process, on first use, and reused.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import html
import json
import logging
import math
import operator
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dynamix_spark.config import Config
from dynamix_spark.delta_io import append_with_retry, is_delta, table_path
from schemas.dates import previous_day
from schemas.expectations import (
    DRIFT_STATS,
    QUALITY_RESULTS,
    SUITE_SCHEMAS,
    Expect,
    SuiteSettings,
    nested_columns,
    suite,
)
from schemas.names import QUALITY_RESULTS_TABLE, USER_WINDOW_STATS_TABLE, table_source
from schemas.tables import RAW_TABLES

log = logging.getLogger(__name__)

# Counts only: GX bundles them into one aggregate per column, where a list of unexpected values costs a
# Spark job per expectation. The few expectations that fail are run again for EXAMPLES unexpected values.
COUNTS_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
EXAMPLES = 5
_OBSERVED_MAX_CHARS = 500
T = TypeVar("T")


@dataclass(frozen=True)
class Reconciliation:
    """Inputs of ``raw = clean + quarantined + counted drops`` for one source and ``ds``.

    ``raw`` and ``quarantined`` are counted with Spark when given as DataFrames (the raw partition as read,
    the staged quarantine rows of this source); ``drops`` are the counted drops by reason.
    """
    raw: DataFrame | int
    quarantined: DataFrame | int
    drops: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation (a row of ``quality_results`` without the run's columns)."""
    expectation: str
    severity: str  # critical | warning
    success: bool
    observed: str
    details: Mapping[str, Any]


@dataclass(frozen=True)
class GateResult:
    """All checks of one table for one run and ``ds``; ``passed`` is False when a critical check failed."""
    run_id: str
    job: str
    table: str
    ds: str
    checks: tuple[CheckResult, ...]
    checked_at: dt.datetime
    elapsed_s: float  # the gate's wall seconds (suite, audit checks, Data Docs): quality_results.gate_seconds
    docs_index: str | None = None  # file:// URL of the Data Docs index, when rendered

    @property
    def critical_failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == "critical")

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        """Failed checks of warning severity (recorded, not blocking)."""
        return tuple(c for c in self.checks if not c.success and c.severity != "critical")

    @property
    def passed(self) -> bool:
        return not self.critical_failures

    def check(self, expectation: str) -> CheckResult:
        for c in self.checks:
            if c.expectation == expectation:
                return c
        raise KeyError(f"{self.table}: no check named {expectation!r}")

    def rows(self) -> list[tuple]:
        """Rows of ``quality_results`` (schema ``QUALITY_RESULTS``); ``gate_seconds`` is the whole gate's, on
        each of its rows."""
        at = self.checked_at.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return [(self.run_id, self.job, self.table, self.ds, c.expectation, c.severity, c.success, c.observed,
                 json.dumps(c.details, sort_keys=True, default=str), at, float(self.elapsed_s)) for c in self.checks]

    def raise_for_critical(self) -> None:
        if not self.passed:
            raise QualityGateError([self])


class QualityGateError(RuntimeError):
    """A critical expectation failed: the staged output must not be published.

    The message names, per failure, the table, the ``ds``, the expectation and the observed value.
    """

    def __init__(self, results: Sequence[GateResult]):
        self.results = tuple(results)
        self.failures = tuple((r, c) for r in self.results for c in r.critical_failures)
        lines = [f"{r.table} ds={r.ds}: expectation {c.expectation} (critical) failed, observed {c.observed}"
                 for r, c in self.failures]
        super().__init__(f"quality gate failed ({len(lines)} critical): " + "; ".join(lines))


def publish_or_fail(results: GateResult | Sequence[GateResult], publish: Callable[[], T]) -> T:
    """Call ``publish`` (the Delta commit) only when no critical check of ``results`` failed.

    Otherwise raise :class:`QualityGateError` without calling it, so the published tables keep their
    previous version. Pass all of a job's gate results to publish several tables all or nothing.
    """
    rs = [results] if isinstance(results, GateResult) else list(results)
    if any(not r.passed for r in rs):
        raise QualityGateError([r for r in rs if not r.passed])
    return publish()


# ----------------------------------------------------------------------------------------------------------
# Great Expectations: one ephemeral context per process.

@dataclass
class _Gx:
    gx: Any
    gxe: Any
    context: Any
    source: Any  # Spark: the staged tables
    audit_source: Any  # pandas: the one-row frames of audit metrics computed with Spark
    batch_definitions: dict[str, Any]
    sites: dict[str, str]  # site folder (one per ds and run) -> GX data docs site name
    lock: threading.Lock


def _import_gx() -> tuple[Any, Any]:
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__") \
            and not hasattr(sys, "ps1"):
        # GX imports pyspark.sql.connect, whose dependency check takes a __main__ without __file__
        # (``python -c``, ``python -``) for a doctest run and calls sys.exit(0) when one of Spark Connect's
        # client packages is missing: the process would end silently with status 0. pyarrow >= 18 is no
        # longer what is missing (issue 14), but grpcio, grpcio-status, googleapis-common-protos and
        # zstandard are (pyspark[connect]; nothing here uses Spark Connect), measured with pyspark 4.2.0:
        # "Skipping doctests: No module named 'grpc'". A name keeps it on the normal path.
        main.__file__ = "<dynamix_spark.quality>"
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


@functools.lru_cache(maxsize=1)
def _gx() -> _Gx:
    gx, gxe = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # persist=False: the job persists its staged DataFrame itself; GX's own persist is never released.
    source = context.data_sources.add_spark(name="dynamix_spark", persist=False)
    # A one-row frame of numbers needs no Spark job per metric: GX's pandas engine checks it in milliseconds.
    audit_source = context.data_sources.add_pandas(name="dynamix_audit")
    return _Gx(gx, gxe, context, source, audit_source, {}, {}, threading.Lock())


def _batch_definition(g: _Gx, asset_name: str, audit: bool) -> Any:
    if asset_name not in g.batch_definitions:
        asset = (g.audit_source if audit else g.source).add_dataframe_asset(name=asset_name)
        g.batch_definitions[asset_name] = asset.add_batch_definition_whole_dataframe("staged")
    return g.batch_definitions[asset_name]


_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
        "!=": operator.ne}


def _row_condition(when: tuple[tuple[str, str, Any], ...]) -> Any:
    from great_expectations.expectations.row_conditions import Column

    cond = None
    for col, op, value in when:
        c = _OPS[op](Column(col), value)
        cond = c if cond is None else cond & c
    return cond


def _to_gx(g: _Gx, e: Expect) -> Any:
    kwargs = dict(e.kwargs)
    if e.when:
        kwargs["row_condition"] = _row_condition(e.when)
    return getattr(g.gxe, e.gx_type)(**kwargs, severity=e.severity, meta={"name": e.name})


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for v in info.values():  # keyed by metric when several metrics raised
        if isinstance(v, Mapping) and v.get("raised_exception"):
            return str(v.get("exception_message"))
    return None


def _observed(result: Mapping[str, Any], error: str | None) -> str:
    if error:
        text = f"error: {error}"
    elif "unexpected_count" in result:
        n, total = result.get("unexpected_count"), result.get("element_count")
        text = f"{n} of {total} rows unexpected"
        sample = result.get("partial_unexpected_list") or []
        if n and sample:
            shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in sample[:EXAMPLES])
            text += f", e.g. [{shown}]"
    elif "observed_value" in result:
        text = str(result["observed_value"])
        mismatched = (result.get("details") or {}).get("mismatched")
        if mismatched:
            text += f" (mismatched: {mismatched})"
    else:
        text = json.dumps(result, default=str)
    return text[:_OBSERVED_MAX_CHARS]


def _validate(g: _Gx, asset_name: str, df: Any, expects: Sequence[Expect], run_id: str,
              run_time: dt.datetime, result_format: Any = None) -> tuple[list[CheckResult], list]:
    """Run ``expects`` on ``df`` (a Spark DataFrame, or the pandas audit frame) as the GX suite
    ``asset_name``; return the results and their store keys."""
    from great_expectations.core.run_identifier import RunIdentifier

    gx = g.gx
    with g.lock:
        bd = _batch_definition(g, asset_name, audit=not isinstance(df, DataFrame))
        s = g.context.suites.add_or_update(gx.ExpectationSuite(name=asset_name, expectations=[_to_gx(g, e) for e in expects]))
        vd = g.context.validation_definitions.add_or_update(gx.ValidationDefinition(name=asset_name, data=bd, suite=s))
        res = vd.run(batch_parameters={"dataframe": df}, result_format=result_format or COUNTS_FORMAT,
                     run_id=RunIdentifier(run_name=run_id, run_time=run_time))
    by_name = {e.name: e for e in expects}
    out = []
    for r in res.results:
        cfg = r.expectation_config
        name = cfg.meta["name"]
        result = r.result or {}
        error = _exception_message(r.exception_info)
        out.append(CheckResult(
            expectation=name,
            severity=by_name[name].severity,
            success=bool(r.success) and error is None,
            observed=_observed(result, error),
            details={"gx_type": cfg.type, "kwargs": dict(by_name[name].kwargs),
                     "when": [list(w) for w in by_name[name].when], "result": result, "error": error},
        ))
    keys = [k for k in g.context.validation_results_store.list_keys()
            if k.run_id.run_name == run_id and k.expectation_suite_identifier.name == asset_name]
    return out, keys


def _with_examples(g: _Gx, table: str, df: DataFrame, expects: Sequence[Expect], checks: list[CheckResult],
                   keys: list, run_id: str, run_time: dt.datetime) -> tuple[list[CheckResult], list]:
    """Run the failed row-level expectations again (suite ``<table>.failed``) for a few unexpected values."""
    failed = {c.expectation for c in checks if not c.success and c.details["result"].get("unexpected_count")}
    if not failed:
        return checks, keys
    again, more_keys = _validate(g, f"{table}.failed", df, [e for e in expects if e.name in failed], run_id, run_time,
                                 {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES})
    sample = {c.expectation: c for c in again}
    out = []
    for c in checks:
        if c.expectation in sample:
            c = dataclasses.replace(c, observed=sample[c.expectation].observed,
                                    details={**c.details, "result": sample[c.expectation].details["result"]})
        out.append(c)
    return out, keys + more_keys


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _render_docs(g: _Gx, docs_dir: str, ds: str, run_id: str, keys: list) -> str:
    """GX Data Docs of this gate under ``<docs_dir>/<ds>/<run_id>/``; return that site's index URL.

    One site per run: GX's index builder deletes every page whose result is not in the context's
    validation results store, which for an ephemeral context holds this process's results only, so a
    site shared across runs would lose the earlier runs' pages.
    """
    path = os.path.abspath(os.path.join(docs_dir, ds, _safe(run_id)))
    with g.lock:
        if path not in g.sites:
            name = f"quality_docs_{len(g.sites)}"
            g.context.add_data_docs_site(site_name=name, site_config={
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": path},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
            g.sites[path] = name
        urls = g.context.build_data_docs(site_names=[g.sites[path]], resource_identifiers=keys)
    _share_static(docs_dir, path)
    return urls[g.sites[path]]


def _share_static(docs_dir: str, site: str) -> None:
    """Point the site's ``static/`` (4 MB of GX fonts and images, copied into every site) at one shared copy."""
    shared = os.path.abspath(os.path.join(docs_dir, "_static"))
    static = os.path.join(site, "static")
    if os.path.islink(static) or not os.path.isdir(static):
        return
    if os.path.isdir(shared):
        shutil.rmtree(static)
    else:
        os.replace(static, shared)
    os.symlink(os.path.relpath(shared, site), static)


def _write_gate_summary(docs_dir: str, result: "GateResult") -> None:
    """``<run site>/gates/<table>.json`` and the top ``<docs_dir>/index.html`` listing every run's gates."""
    site = os.path.join(docs_dir, result.ds, _safe(result.run_id))
    os.makedirs(os.path.join(site, "gates"), exist_ok=True)
    summary = {"table": result.table, "job": result.job, "passed": result.passed,
               "critical_failures": [[c.expectation, c.observed] for c in result.critical_failures],
               "warnings": [[c.expectation, c.observed] for c in result.warnings], "checks": len(result.checks)}
    with open(os.path.join(site, "gates", f"{_safe(result.table)}.json"), "w") as f:
        json.dump(summary, f, sort_keys=True)
    rows = []
    for ds_dir in sorted(os.listdir(docs_dir), reverse=True):
        runs = os.path.join(docs_dir, ds_dir)
        if ds_dir.startswith("_") or not os.path.isdir(runs):
            continue
        for run in sorted(os.listdir(runs), key=lambda r: os.path.getmtime(os.path.join(runs, r)), reverse=True):
            gates = os.path.join(runs, run, "gates")
            if not os.path.isdir(gates):
                continue
            for name in sorted(os.listdir(gates)):
                with open(os.path.join(gates, name)) as f:
                    g = json.load(f)
                state = "passed" if g["passed"] else "FAILED"
                notes = "; ".join(f"{e}: {o}" for e, o in g["critical_failures"] + g["warnings"])
                rows.append(f"<tr><td>{html.escape(ds_dir)}</td><td><a href='{html.escape(ds_dir)}/{html.escape(run)}/index.html'>"
                            f"{html.escape(run)}</a></td><td>{html.escape(g['table'])}</td><td class='{state}'>{state}</td>"
                            f"<td>{g['checks']}</td><td>{html.escape(notes)}</td></tr>")
    page = ("<!doctype html><meta charset='utf-8'><title>DynamiX quality gates</title>"
            "<style>td,th{padding:2px 8px;text-align:left}.FAILED{color:#b00;font-weight:bold}</style>"
            "<h1>DynamiX quality gates</h1><p>One GX Data Docs site per run; failures and warnings by table.</p>"
            "<table><tr><th>ds</th><th>run</th><th>table</th><th>gate</th><th>checks</th><th>failures / warnings</th></tr>"
            + "".join(rows) + "</table>")
    with open(os.path.join(docs_dir, "index.html"), "w") as f:
        f.write(page)


# ----------------------------------------------------------------------------------------------------------
# Audit checks computed with Spark.

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
           reconciliation: Reconciliation | None, previous: DataFrame | None, load_previous: bool) -> _Audit:
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
    try:
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
        if previous is None and load_previous:
            previous = load_previous_partition(spark, table, ds, cfg)
        before = _stats(previous, table) if previous is not None else None
        if before is None or not before.get("row_count"):
            a.direct.append(CheckResult("drift", q.drift_severity, True,
                                        f"skipped: no previous partition ds={previous_day(ds)}", {"previous_ds": previous_day(ds)}))
        else:
            for s in stats:
                now, prev = today.get(s.name), before.get(s.name)
                name = f"drift:{s.name}"
                if not (_finite(prev) and _finite(now)):
                    a.direct.append(CheckResult(name, q.drift_severity, True, f"skipped: today={now}, previous={prev}",
                                                {"today": now, "previous": prev}))
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
                      {"today": now, "previous": prev, "previous_ds": previous_day(ds), "kind": s.kind, "tolerance": tol})
    return a


# ----------------------------------------------------------------------------------------------------------

def gate(spark: SparkSession, df: DataFrame, table: str, ds: str, cfg: Config, *, job: str, run_id: str,
         reconciliation: Reconciliation | None = None, expected_rows: int | None = None,
         previous: DataFrame | None = None, load_previous: bool = True, record: bool = True,
         extra_checks: Sequence[CheckResult] = ()) -> GateResult:
    """Validate the staged ``df`` of ``table`` for ``ds`` (persist it first: it is scanned several times).

    - the table's suite from ``schemas.expectations.suite`` (GX, on the Spark DataFrame);
    - ``reconciliation``: raw = clean (``df``'s rows) + quarantined + drops, for a clean table;
    - ``expected_rows``: ``df`` must have exactly this many rows (``row_count_reconciles``), e.g. clean ad
      impressions of the day x policies for ``ebf_examples``;
    - drift against ``previous`` (default: the published partition of ``ds`` - 1, when ``load_previous``);
    - the active-share band for ``user_window_stats``;
    - ``extra_checks``: results the caller established without the data (``source_present`` for a raw source,
      :func:`source_present_check`), recorded with the rest.

    With ``record`` the results are appended to ``quality_results`` at once (also when the gate fails, so
    a blocked run leaves its evidence); Data Docs are rendered when ``quality.docs_dir`` is set. The
    caller decides what a failure does: :func:`publish_or_fail` raises on a critical one.
    """
    if table not in SUITE_SCHEMAS:
        raise KeyError(f"no expectation suite for table {table!r} (known: {sorted(SUITE_SCHEMAS)})")
    t0 = time.perf_counter()
    checked_at = dt.datetime.now(dt.timezone.utc)
    expects = list(suite(table, suite_settings(cfg), ds))
    if expected_rows is not None:
        expects.append(Expect("row_count_reconciles", "ExpectTableRowCountToEqual", {"value": int(expected_rows)}))
    g = _gx()
    checks, keys = _validate(g, table, df, expects, run_id, checked_at)
    checks, keys = _with_examples(g, table, df, expects, checks, keys, run_id, checked_at)

    audit = _audit(spark, df, table, ds, cfg, reconciliation, previous, load_previous)
    if audit.expects:
        audit_checks, audit_keys = _validate(g, f"{table}.audit", audit.frame(), audit.expects, run_id, checked_at)
        keys += audit_keys
        for c in audit_checks:
            checks.append(CheckResult(c.expectation, c.severity, c.success, audit.observed[c.expectation],
                                      {**c.details, "inputs": audit.inputs[c.expectation]}))
    checks += audit.direct
    checks += list(extra_checks)

    docs = None
    if cfg.quality.docs_dir:
        try:
            docs = _render_docs(g, cfg.quality.docs_dir, ds, run_id, keys)
        except Exception as e:  # rendering is a report, not a check: never block a run on it
            log.warning("quality: Data Docs rendering failed for %s ds=%s: %s", table, ds, e)
    result = GateResult(run_id=run_id, job=job, table=table, ds=ds, checks=tuple(checks), checked_at=checked_at,
                        elapsed_s=time.perf_counter() - t0, docs_index=docs)
    if cfg.quality.docs_dir:
        try:
            _write_gate_summary(cfg.quality.docs_dir, result)
        except OSError as e:
            log.warning("quality: could not write the gate summary under %s: %s", cfg.quality.docs_dir, e)
    for c in result.warnings:
        log.warning("quality warning: %s ds=%s %s observed %s", table, ds, c.expectation, c.observed)
    for c in result.critical_failures:
        log.error("quality failure: %s ds=%s %s observed %s", table, ds, c.expectation, c.observed)
    if record:
        record_results(spark, cfg.paths.lake_root, [result])
    return result


def source_present_check(source: str, path: str, present: bool, required: bool) -> CheckResult:
    """``source_present``: whether the day's raw partition folder of ``source`` exists. Absent is a warning for
    an optional source (``paths.required_sources``); a required one never gets here (the read fails first)."""
    observed = f"{path} exists" if present else f"absent: no raw partition {path} (optional source: empty sequences)"
    return CheckResult("source_present", "critical" if required else "warning", present, observed,
                       {"source": source, "path": path, "present": present, "required": required})


def record_results(spark: SparkSession, lake_root: str, results: Sequence[GateResult]) -> None:
    """Append the checks of ``results`` to ``quality_results`` (history: never overwritten).

    ``mergeSchema``: a table written before a column was added (``gate_seconds``) gets the column, null in
    its earlier rows."""
    rows = [row for r in results for row in r.rows()]
    if not rows:
        return
    append_with_retry(spark.createDataFrame(rows, QUALITY_RESULTS), table_path(lake_root, QUALITY_RESULTS_TABLE),
                      merge_schema=True)
