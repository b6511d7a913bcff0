"""Delta Lake I/O: idempotent per-date writes, table versions, run metrics.

Every nightly write is ``mode("overwrite")`` with ``replaceWhere`` on the date (never replaceWhere
without overwrite), so re-running a day replaces exactly that day, in one commit whose ``userMetadata``
carries the job's parameters (visible in ``DESCRIBE HISTORY``).
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from schemas.names import RUN_METRICS_TABLE
from schemas.tables import RUN_METRICS


def table_path(lake_root: str, table: str) -> str:
    return f"{lake_root.rstrip('/')}/{table}"


def conform(df: DataFrame, schema: StructType) -> DataFrame:
    """Select exactly the schema's columns, cast to its types: the boundary every written table passes."""
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def ds_predicate(ds: str, column: str = "ds") -> str:
    dt.date.fromisoformat(ds)  # refuse anything but a date: this string goes into SQL
    return f"{column} = '{ds}'"


def overwrite_partition(df: DataFrame, path: str, ds: str, schema: StructType, commit_info: Mapping[str, Any],
                        partition_by: tuple[str, ...] = ("ds",), extra_predicate: str | None = None) -> int:
    """Replace the ``ds`` partition (narrowed by ``extra_predicate``) of the Delta table at ``path`` with
    ``df`` in one commit; return the new version.

    A contract that gained a nullable column (the organic and page ``category_id``) adds it to a table written
    before it (Delta's ``mergeSchema``; the other partitions read it as null). ``df`` is conformed to ``schema``
    first, so nothing but the contract's columns can be added this way."""
    out = conform(df, schema)
    where = ds_predicate(ds) + (f" AND ({extra_predicate})" if extra_predicate else "")
    writer = (out.write.format("delta")
              .mode("overwrite")
              .option("replaceWhere", where)
              .option("mergeSchema", "true")
              .option("userMetadata", json.dumps(commit_info, sort_keys=True, default=str))
              .partitionBy(*partition_by))
    # The first night: two runs (two dates) may both create the table; the loser's commit fails whole
    # (nothing of it is visible) and is retried against the table the other created, where disjoint
    # replaceWhere predicates commit side by side. A same-date conflict still fails (ConcurrentAppend).
    _retry_create_conflict(lambda: writer.save(path))
    return table_version(df.sparkSession, path)


def table_version(spark: SparkSession, path: str) -> int:
    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def is_delta(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def new_run_id(job: str, ds: str) -> str:
    return f"{job}-{ds}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class RunMetrics:
    """One row of the ``run_metrics`` table: what a job did for one ``ds`` (and source, where it applies)."""

    run_id: str
    job: str
    ds: str
    source: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    ended_at: dt.datetime | None = None
    status: str = "running"
    rows_in: int | None = None
    rows_out: int | None = None
    rows_quarantined: int | None = None
    drops: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    epsilon: float | None = None
    epsilon_mode: str | None = None
    delta_versions: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple:
        ended = self.ended_at or dt.datetime.now(dt.timezone.utc)
        return (self.run_id, self.job, self.ds, self.source, self.started_at.replace(tzinfo=None),
                ended.replace(tzinfo=None), self.status, self.rows_in, self.rows_out, self.rows_quarantined,
                self.drops, self.quarantined, self.epsilon, self.epsilon_mode, self.delta_versions,
                json.dumps(self.params, sort_keys=True, default=str))


# Delta's conflicts between two blind appends: only when both create the table (the first commit of an empty
# folder), e.g. two days of a backfill started at once on a new lake. Retrying appends to the table the other
# writer created.
_CREATE_CONFLICTS = ("ProtocolChangedException", "MetadataChangedException", "DELTA_PROTOCOL_CHANGED",
                     "DELTA_METADATA_CHANGED")


def _retry_create_conflict(write, attempts: int = 3) -> None:
    """Run ``write``; again (up to ``attempts`` in all) when it lost a race to create the table."""
    for attempt in range(attempts):
        try:
            write()
            return
        except Exception as e:
            if attempt == attempts - 1 or not any(k in f"{type(e).__name__} {e}" for k in _CREATE_CONFLICTS):
                raise


def append_with_retry(df: DataFrame, path: str, partition_by: tuple[str, ...] = ("ds",), attempts: int = 3,
                      merge_schema: bool = False) -> None:
    """Blind append of ``df`` to the Delta table at ``path``, retried when a concurrent writer created it.
    ``merge_schema`` adds ``df``'s new nullable columns to an existing table (Delta's ``mergeSchema``)."""
    writer = df.write.format("delta").mode("append").partitionBy(*partition_by)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    _retry_create_conflict(lambda: writer.save(path), attempts)


def append_run_metrics(spark: SparkSession, lake_root: str, metrics: list[RunMetrics]) -> None:
    """Append to ``run_metrics`` (history, never overwritten: a re-run adds rows with a new run_id)."""
    # Rows are built in UTC; the session time zone is UTC, so naive datetimes are read as UTC.
    df = spark.createDataFrame([m.row() for m in metrics], RUN_METRICS)
    append_with_retry(df, table_path(lake_root, RUN_METRICS_TABLE))
