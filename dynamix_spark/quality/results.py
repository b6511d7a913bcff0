"""Result types of the quality gates and the table they are recorded in.

:class:`CheckResult` is one expectation's outcome, :class:`GateResult` all of one table's for a run and ``ds``
(its :meth:`GateResult.rows` are rows of ``quality_results``), :class:`QualityGateError` what a critical
failure raises, and :func:`publish_or_fail` the only way a job commits a gated table.
:func:`record_results` appends results to ``quality_results`` (history, never overwritten).
"""
from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

from pyspark.sql import DataFrame, SparkSession

from dynamix_spark.delta_io import append_with_retry, table_path
from schemas.expectations import QUALITY_RESULTS
from schemas.names import QUALITY_RESULTS_TABLE

T = TypeVar("T")


@dataclass(frozen=True)
class Reconciliation:
    """Inputs of ``raw = clean + quarantined + counted drops`` for one source and ``ds``.

    ``raw`` and ``quarantined`` are counted with Spark when given as DataFrames (the raw partition as read,
    the staged quarantine rows of this source), or given as the counts a job already has (denoise: the raw gate's
    row count, :attr:`GateResult.row_count`, and the quarantined rows it counted by status), which costs no
    Spark job; ``drops`` are the counted drops by reason.
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
    elapsed_s: float  # the gate's wall seconds (suite, audit checks, its Data Docs): quality_results.gate_seconds
    docs_index: str | None = None  # file:// URL of the Data Docs index, when rendered
    # The gated rows as Great Expectations counted them (its table.row_count), None if no expectation of the
    # suite needed it: a count other checks can share (denoise's reconciliation takes the raw gate's).
    row_count: int | None = None
    # GX's store keys of this gate's validation results: what a Data Docs site renders (render_gate_docs).
    docs_keys: tuple = ()

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


# The drift rows (table, expectation, details) this process appended to ``quality_results``, per (lake, run_id,
# ds), newest last: a run's rows are never rewritten, so the next day's gates of a backfill or a nightly
# that recorded them read them here instead of querying the table again (1.5-2 s per job run after the
# appends of the run before; issue 17). A run recorded by another process is not here: it is read from the table.
_RECORDED_DRIFT: OrderedDict[tuple[str, str, str], list[tuple[str, str, str]]] = OrderedDict()
_RECORDED_DRIFT_RUNS = 64


def recorded_drift_rows(lake_root: str, run_id: str, ds: str) -> list[tuple[str, str, str]] | None:
    """The drift rows ``(table, expectation, details JSON)`` of ``run_id`` for ``ds`` that this process recorded
    in the ``quality_results`` of ``lake_root`` (:func:`record_results`), or None when it recorded none."""
    rows = _RECORDED_DRIFT.get((lake_root, run_id, ds))
    return list(rows) if rows is not None else None


def record_results(spark: SparkSession, lake_root: str, results: Sequence[GateResult]) -> None:
    """Append the checks of ``results`` to ``quality_results`` (history: never overwritten).

    ``mergeSchema``: a table written before a column was added (``gate_seconds``) gets the column, null in
    its earlier rows. Once appended, the drift rows are also kept for :func:`recorded_drift_rows`."""
    rows = [row for r in results for row in r.rows()]
    if not rows:
        return
    append_with_retry(spark.createDataFrame(rows, QUALITY_RESULTS), table_path(lake_root, QUALITY_RESULTS_TABLE),
                      merge_schema=True)
    for run_id, _job, table, ds, expectation, _sev, _ok, _observed, details, _at, _s in rows:
        if expectation.startswith("drift"):
            key = (lake_root, run_id, ds)
            _RECORDED_DRIFT.setdefault(key, []).append((table, expectation, details))
            _RECORDED_DRIFT.move_to_end(key)
    while len(_RECORDED_DRIFT) > _RECORDED_DRIFT_RUNS:
        _RECORDED_DRIFT.popitem(last=False)
