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
- ``drift:<statistic>``: key statistics against the previous ``ds`` (``schemas.expectations.DRIFT_STATS``;
  severity ``quality.drift_severity``, a warning by default): as the gate of the run that published that day
  recorded them in ``quality_results``, or, where it recorded none, computed from that day's partition;
- ``type:<column>`` for nested columns (GX's Spark type check compares only the outer type class).

Every gate call appends one row per check to the Delta table ``quality_results`` (schema
``schemas.expectations.QUALITY_RESULTS``) and renders GX Data Docs under ``quality.docs_dir``.
One ephemeral GX context is created per process, on first use, and reused.

The package, by concern: ``results`` (result types, :func:`publish_or_fail`, :func:`record_results`), ``gx``
(the GX adapter), ``docs`` (Data Docs and the index of gates), ``audit`` (checks computed with Spark); this
module holds :func:`gate`, which runs them in order, and re-exports the public names.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession

from dynamix_spark.config import Config
from dynamix_spark.quality.audit import (
    _audit,
    load_previous_partition,
    source_present_check,
    suite_settings,
)
from dynamix_spark.quality.docs import _render_docs, _write_gate_summary
from dynamix_spark.quality.gx import COUNTS_FORMAT, EXAMPLES, _gx, _to_gx, _validate, _with_examples
from dynamix_spark.quality.results import (
    CheckResult,
    GateResult,
    QualityGateError,
    Reconciliation,
    publish_or_fail,
    record_results,
)
from schemas.expectations import SUITE_SCHEMAS, Expect, suite

__all__ = [
    "COUNTS_FORMAT", "EXAMPLES", "CheckResult", "GateResult", "QualityGateError", "Reconciliation", "gate",
    "load_previous_partition", "publish_or_fail", "record_results", "render_gate_docs", "source_present_check",
    "suite_settings",
    "_gx", "_to_gx",  # the GX context and expectation builder, for tests/test_quality.py
]

log = logging.getLogger(__name__)


# The suites' expectations whose GX result is the table's row count (its ``table.row_count`` metric).
_ROW_COUNT_TYPES = ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal")


def render_gate_docs(cfg: Config, results: Sequence[GateResult]) -> list[GateResult]:
    """Render the Data Docs of ``results`` (gates of one run and ``ds``) in one GX site build, and their gate
    summaries and the top index; return them with ``docs_index`` set. Nothing without ``quality.docs_dir``.
    Rendering is a report, not a check: a failure is logged and never blocks a run."""
    docs_dir = cfg.quality.docs_dir
    if not docs_dir or not results:
        return list(results)
    first = results[0]
    docs = None
    try:
        docs = _render_docs(_gx(), docs_dir, first.ds, first.run_id, [k for r in results for k in r.docs_keys])
    except Exception as e:
        log.warning("quality: Data Docs rendering failed for %s ds=%s: %s", [r.table for r in results], first.ds, e)
    out = [dataclasses.replace(r, docs_index=docs) for r in results]
    try:
        _write_gate_summary(docs_dir, out)
    except OSError as e:
        log.warning("quality: could not write the gate summary under %s: %s", docs_dir, e)
    return out


def _gx_row_count(checks: Sequence[CheckResult]) -> int | None:
    """The row count GX computed for a row-count expectation of the suite (``row_count_positive``,
    ``row_count_reconciles``), or None: the audit checks and the caller share it instead of counting again."""
    for c in checks:
        observed = c.details.get("result", {}).get("observed_value") if c.details.get("gx_type") in _ROW_COUNT_TYPES \
            else None
        if c.details.get("error") is None and isinstance(observed, int) and not isinstance(observed, bool):
            return observed
    return None


def gate(spark: SparkSession, df: DataFrame, table: str, ds: str, cfg: Config, *, job: str, run_id: str,
         reconciliation: Reconciliation | None = None, expected_rows: int | None = None,
         previous: DataFrame | None = None, load_previous: bool = True, record: bool = True,
         extra_checks: Sequence[CheckResult] = (), render_docs: bool = True) -> GateResult:
    """Validate the staged ``df`` of ``table`` for ``ds`` (persist it first: it is scanned several times).

    - the table's suite from ``schemas.expectations.suite`` (GX, on the Spark DataFrame);
    - ``reconciliation``: raw = clean (``df``'s rows) + quarantined + drops, for a clean table;
    - ``expected_rows``: ``df`` must have exactly this many rows (``row_count_reconciles``), e.g. clean ad
      impressions of the day x policies for ``ebf_examples``;
    - drift against ``previous`` (default, when ``load_previous``: the statistics of ``ds`` - 1 that the gate of
      ``job``'s run that published that day recorded, else that day's partition);
    - the active-share band for ``user_window_stats``;
    - ``extra_checks``: results the caller established without the data (``source_present`` for a raw source,
      :func:`source_present_check`), recorded with the rest.

    With ``record`` the results are appended to ``quality_results`` at once (also when the gate fails, so
    a blocked run leaves its evidence); Data Docs are rendered when ``quality.docs_dir`` is set and
    ``render_docs`` (False: the caller renders several gates' at once with :func:`render_gate_docs`, as the
    staged write does at its commit). The caller decides what a failure does: :func:`publish_or_fail` raises on a
    critical one.
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
    row_count = _gx_row_count(checks)

    audit = _audit(spark, df, table, ds, cfg, reconciliation, previous, load_previous, row_count=row_count,
                   job=job, run_id=run_id)
    if audit.expects:
        audit_checks, audit_keys = _validate(g, f"{table}.audit", audit.frame(), audit.expects, run_id, checked_at)
        keys += audit_keys
        for c in audit_checks:
            checks.append(CheckResult(c.expectation, c.severity, c.success, audit.observed[c.expectation],
                                      {**c.details, "inputs": audit.inputs[c.expectation]}))
    checks += audit.direct
    checks += list(extra_checks)

    result = GateResult(run_id=run_id, job=job, table=table, ds=ds, checks=tuple(checks), checked_at=checked_at,
                        elapsed_s=0.0, row_count=row_count, docs_keys=tuple(keys))
    if render_docs:
        result = render_gate_docs(cfg, [result])[0]
    result = dataclasses.replace(result, elapsed_s=time.perf_counter() - t0)
    for c in result.warnings:
        log.warning("quality warning: %s ds=%s %s observed %s", table, ds, c.expectation, c.observed)
    for c in result.critical_failures:
        log.error("quality failure: %s ds=%s %s observed %s", table, ds, c.expectation, c.observed)
    if record:
        record_results(spark, cfg.paths.lake_root, [result])
    return result
