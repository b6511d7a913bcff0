"""Write-audit-publish as one step: stage a job's outputs, gate them, record the results, commit all or none.

Every job publishes through a :class:`StagedWrite`, so the sequence is written once::

    with StagedWrite(spark, cfg, job=JOB, run_id=run_id, ds=ds) as stage:
        stats = stage.add("user_window_stats", out, USER_WINDOW_STATS)          # conform, persist, gate
        stage.add("user_segments", stats, USER_SEGMENTS, persist=False)
        versions = stage.commit(commit_info)  # {table: Delta version}; QualityGateError before any commit
        ...                                   # the job's own figures for its run_metrics rows
        stage.record_run([m])                 # publish: the run_ledger row; then append run_metrics
    # leaving the block unpersists what the stage persisted (also when a gate failed)

- :meth:`StagedWrite.add` conforms a table's rows to its schema, persists them (the gate scans them several
  times, the write once more; with ``checkpoint``, materialised at once as a local checkpoint) and runs the
  table's suite at once (:func:`dynamix_spark.quality.gate` with
  ``record=False``; its keyword arguments pass through: ``reconciliation``, ``expected_rows``, ...);
- :meth:`StagedWrite.audit` gates an input that is checked but not written (a raw partition);
- :meth:`StagedWrite.commit` appends every gate's checks to ``quality_results`` (also when one failed, so a
  blocked run leaves its evidence), renders their Data Docs in one site build (one per gate cost 0.2 s each:
  GX compiles its page templates again on every build), then raises :class:`~dynamix_spark.quality.QualityGateError` if any
  critical check failed, else replaces each table's ``ds`` partition in the order the tables were added
  (:func:`~dynamix_spark.delta_io.overwrite_partition`, one commit per table) and returns the versions;
- :meth:`StagedWrite.record_run` publishes the run: one ``run_ledger`` row with every committed table's version
  (:func:`dynamix_spark.ledger.append_ledger`), after the last commit, then the ``run_metrics`` rows. Readers
  (:func:`dynamix_spark.ledger.read_published`) see a run only once its ledger row exists, so a run killed
  between its commits is invisible to them: they read the day as the previous published run left it.

A table of several outputs needs one more ``add``; the gates, the recording and the all-or-none commit follow.
Cost: each ``add`` costs its gate (a few Spark jobs over the persisted rows); the stage itself adds none.

``checkpoint=True`` (denoise, user_window_stats) makes :meth:`~StagedWrite.cache` and :meth:`~StagedWrite.add`
materialise each DataFrame at once into a local checkpoint (``localCheckpoint(eager=True)``, memory then disk)
instead of a lazy ``persist``. Two costs move: the rows are computed by the job's own step, not by the gate's first
scan (the gate's seconds are the gate's), and every later query over them is planned from a scan of the stored
rows instead of the whole lineage (a persisted DataFrame keeps its plan; Spark analyses and optimises all of it
for each of a gate's ~10 queries before it substitutes the cache). Measured on a demo day (BENCHMARKS.md, issue
17): user_window_stats 23-30 s -> 16-20 s, its gates 10-12 s -> 6-8 s. A local checkpoint lives in the
executors' block managers: a lost executor fails the job instead of recomputing the rows (the nightly's retry
re-runs the day). build_ebf keeps ``persist``: its 5 policies' examples are larger than the others' outputs and
stay compressed in the columnar cache.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from dynamix_spark.config import Config
from dynamix_spark.delta_io import (RunMetrics, append_run_metrics, conform, is_delta, overwrite_partition,
                                    table_path)
from dynamix_spark.ledger import append_ledger
from dynamix_spark.quality import GateResult, gate, publish_or_fail, record_results, render_gate_docs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Staged:
    table: str
    df: DataFrame
    schema: StructType
    partition_by: tuple[str, ...]
    extra_predicate: str | None
    create: bool


class StagedWrite:
    """The staged outputs of one job run for one ``ds``, their gate results and their all-or-none commit.

    Use it as a context manager: leaving the block unpersists every DataFrame the stage persisted
    (:meth:`cache`, :meth:`add`), whether the run committed or failed.
    """

    def __init__(self, spark: SparkSession, cfg: Config, *, job: str, run_id: str, ds: str, checkpoint: bool = False):
        self.spark, self.cfg, self.job, self.run_id, self.ds = spark, cfg, job, run_id, ds
        self.checkpoint = checkpoint
        self.results: list[GateResult] = []
        self._staged: list[_Staged] = []
        self._persisted: list[DataFrame] = []
        self.versions: dict[str, int] = {}  # what commit() committed: {table: version}
        self.docs_seconds = 0.0  # the run's Data Docs build (commit): the gates' cost beside gate_seconds

    def __enter__(self) -> "StagedWrite":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the run's own error (e.g. QualityGateError) is what the caller must see
            self.close()
        except Exception as e:
            log.warning("staged write: unpersist after a failed run failed: %s", e)

    def cache(self, df: DataFrame) -> DataFrame:
        """``df`` persisted (memory, then disk) until the stage closes: for an intermediate read several times.
        With ``checkpoint``, computed now into a local checkpoint whose plan is a scan of the stored rows."""
        if self.checkpoint:
            out = df.localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK)
        else:
            out = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._persisted.append(out)
        return out

    def _gate(self, df: DataFrame, table: str, gate_kwargs: Mapping[str, Any]) -> GateResult:
        result = gate(self.spark, df, table, self.ds, self.cfg, job=self.job, run_id=self.run_id, record=False,
                      render_docs=False, **gate_kwargs)
        self.results.append(result)
        return result

    def audit(self, table: str, df: DataFrame, **gate_kwargs: Any) -> GateResult:
        """Gate ``df`` as ``table`` without writing it (e.g. a raw partition as read); its critical failures
        block the commit like those of the written tables."""
        return self._gate(df, table, gate_kwargs)

    def add(self, table: str, df: DataFrame, schema: StructType, *, persist: bool = True,
            gate_partitions: int | None = None, partition_by: tuple[str, ...] = ("ds",),
            extra_predicate: str | None = None, create: bool = True, **gate_kwargs: Any) -> DataFrame:
        """Stage ``df`` as the ``ds`` partition of ``table`` and gate it now; return the staged rows.

        - ``schema``: the table's schema; the rows are conformed to it (the gate sees exactly what is written);
        - ``persist``: persist the conformed rows until the stage closes (False where ``df`` is a cheap
          projection of something already persisted);
        - ``gate_partitions``: let the gate scan the rows coalesced to this many partitions (a union of many
          projections has many; each of GX's Spark jobs pays the task overhead per partition), the write
          keeps them as they are;
        - ``partition_by``, ``extra_predicate``: as :func:`~dynamix_spark.delta_io.overwrite_partition`;
        - ``create``: False writes the table only if it already exists at commit time (an optional source that
          a deployment never had gets no table);
        - ``gate_kwargs``: passed to :func:`~dynamix_spark.quality.gate` (``reconciliation``,
          ``expected_rows``, ``extra_checks``, ``previous``, ``load_previous``).
        """
        staged = conform(df, schema)
        if persist:
            staged = self.cache(staged)
        self._gate(staged.coalesce(gate_partitions) if gate_partitions else staged, table, gate_kwargs)
        self._staged.append(_Staged(table, staged, schema, tuple(partition_by), extra_predicate, create))
        return staged

    def commit(self, commit_info: Mapping[str, Any]) -> dict[str, int]:
        """Record every gate's checks in ``quality_results``, then commit every staged table or none.

        ``commit_info`` is each commit's ``userMetadata`` (the job's parameters). Raises
        :class:`~dynamix_spark.quality.QualityGateError` without writing when a critical check failed; returns
        ``{table: new Delta version}`` of the tables written, in the order they were added.
        """
        lake = self.cfg.paths.lake_root
        record_results(self.spark, lake, self.results)
        t0 = time.perf_counter()
        self.results = render_gate_docs(self.cfg, self.results)  # one Data Docs build for the run's gates
        self.docs_seconds = time.perf_counter() - t0

        def publish() -> dict[str, int]:
            versions = {}
            for s in self._staged:
                path = table_path(lake, s.table)
                if not s.create and not is_delta(self.spark, path):
                    continue
                versions[s.table] = overwrite_partition(s.df, path, self.ds, s.schema, commit_info,
                                                        partition_by=s.partition_by, extra_predicate=s.extra_predicate)
                self.versions = dict(versions)  # as far as it got (a failure after commit k leaves k)
            return versions

        return publish_or_fail(self.results, publish)

    @property
    def warnings(self) -> list[str]:
        """The failed warning-severity checks of every gate (names, in gate order)."""
        return [c.expectation for r in self.results for c in r.warnings]

    @property
    def gate_seconds(self) -> float:
        """Wall seconds spent in this stage's gates (each gate's ``quality_results.gate_seconds``: suite and audit
        checks, summed); the run's one Data Docs build is :attr:`docs_seconds` (``run_metrics.params``)."""
        return sum(r.elapsed_s for r in self.results)

    def record_run(self, metrics: Sequence[RunMetrics]) -> None:
        """Publish the run, then mark ``metrics`` succeeded and append them to ``run_metrics``; each row's params
        get the run's ``quality_warnings``, ``gate_seconds`` and ``docs_seconds``.

        Publishing is one ``run_ledger`` append with the version of every table :meth:`commit` committed, after
        the last commit: from then on readers see this run's partitions, before it the previous run's. The ledger
        row comes first, so a ``succeeded`` run_metrics row always names a published run."""
        append_ledger(self.spark, self.cfg.paths.lake_root, run_id=self.run_id, job=self.job, ds=self.ds,
                      versions=self.versions)
        now = dt.datetime.now(dt.timezone.utc)
        for m in metrics:
            m.params = {**m.params, "quality_warnings": self.warnings, "gate_seconds": round(self.gate_seconds, 3),
                        "docs_seconds": round(self.docs_seconds, 3)}
            m.status, m.ended_at = "succeeded", now
        append_run_metrics(self.spark, self.cfg.paths.lake_root, list(metrics))

    def close(self) -> None:
        """Unpersist what the stage persisted (a local checkpoint: the blocks of the RDD its plan scans)."""
        for df in self._persisted:
            if self.checkpoint:
                _release_checkpoint(df)
            else:
                df.unpersist()
        self._persisted.clear()


def _release_checkpoint(df: DataFrame) -> None:
    """Drop the stored blocks of a DataFrame made by ``localCheckpoint`` (its plan is a ``LogicalRDD`` over the
    checkpointed RDD; ``DataFrame.unpersist`` only knows the cache manager's entries). Through the context's
    ``unpersistRDD``: ``RDD.unpersist`` warns, for every such RDD, that its lineage cannot be recomputed."""
    plan = df._jdf.queryExecution().analyzed()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        df.sparkSession.sparkContext._jsc.sc().unpersistRDD(plan.rdd().id(), False)
