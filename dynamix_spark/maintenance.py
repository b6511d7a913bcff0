"""Delta table maintenance after a nightly run: OPTIMIZE (compaction, Z-order by user) and VACUUM.

OPTIMIZE touches only the partitions the run wrote (``WHERE ds IN (<days>)``), so its cost follows the
day's data, not the table's history. A night writes each ``ds`` partition as several files per writer task
(and ``run_metrics`` as one tiny file per job), and compaction merges them into few large ones. OPTIMIZE
changes no data (its commit has ``dataChange = false``): readers, and a training run pinned to an older
version, see the same rows.

Z-order (``maintenance.zorder_tables``, by ``maintenance.zorder_by`` = ``user_id``): the tables that are
read per user, where file-level min/max statistics on ``user_id`` let Delta skip files for a user lookup
or a join on a set of users (``user_window_stats``, ``user_segments``, the clean event tables that EBF
sequences and debugging read per user). With one column, Z-order is a range clustering on it.
``ebf_examples`` is only compacted: the training loader reads whole (ds, policy, segment) partitions at a
pinned version and never filters by user, so Z-order's full sort of the day would buy no skipping; and the
loader shuffles row groups, which clustering users into the same row groups would only make less mixed.
``quarantine`` and ``run_metrics`` have no user key to cluster on (``run_metrics`` has none at all).

VACUUM (``maintenance.vacuum_retention_hours``, default 168 h, set on each table as
``delta.deletedFileRetentionDuration``: Delta 4.x takes the retention from there, not from ``RETAIN``)
deletes files that no version younger than the retention still references, and files in the table folder that no version ever did (failed writes)
once they are older than the retention. Time travel (``VERSION AS OF``, the loader's pinned snapshot)
therefore works back exactly that far: the retention must be at least the longest span over which a
training run, an experiment to reproduce or a backfill re-reads a pinned version. 168 h is also Delta's
own floor (``delta.deletedFileRetentionDuration``); the config refuses less. VACUUM is table-wide (the
retention is about versions, not partitions) and records ``VACUUM START``/``END`` commits in the history.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from dynamix_spark.catalog import lake_tables
from dynamix_spark.config import MaintenanceConfig
from dynamix_spark.delta_io import ds_predicate, table_version


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one table."""
    table: str
    location: str
    zorder_by: tuple[str, ...]  # () when only compacted
    optimize_predicate: str | None  # None: OPTIMIZE skipped; "" : the whole (unpartitioned) table
    files_removed: int | None
    files_added: int | None
    vacuum_retention_hours: int | None  # None: VACUUM skipped
    vacuum_files_deleted: int | None  # from the VACUUM END commit (None where Delta did not log it)
    version: int  # the table's version after maintenance
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def days_predicate(days: list[str]) -> str:
    """``ds IN ('2026-11-01', ...)``, each day checked to be a date (the string goes into SQL)."""
    for d in days:
        ds_predicate(d)
    return "ds IN (" + ", ".join(f"'{d}'" for d in sorted(set(days))) + ")"


def _sql_path(location: str) -> str:
    if "`" in location:
        raise ValueError(f"refusing to put {location!r} into SQL (backtick)")
    return f"delta.`{location}`"


def partition_columns(spark: SparkSession, location: str) -> list[str]:
    """The table's partition columns, from ``DESCRIBE TABLE`` (metadata only; ``DESCRIBE DETAIL`` would
    reconstruct the whole file list to count files)."""
    cols, inside = [], False
    for r in spark.sql(f"DESCRIBE TABLE {_sql_path(location)}").collect():
        name = (r["col_name"] or "").strip()
        if name == "# Partition Information":
            inside = True
        elif inside and name != "# col_name":
            if not name or name.startswith("#"):
                break
            cols.append(name)
    return cols


def table_properties(spark: SparkSession, location: str) -> dict[str, str]:
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {_sql_path(location)}").collect()}


def optimize_table(spark: SparkSession, location: str, predicate: str, zorder_by: tuple[str, ...]) -> dict:
    """OPTIMIZE the files matching ``predicate`` (partition columns only; "" for all), Z-ordered by
    ``zorder_by`` when given, else bin-packing compaction. Returns Delta's file counts."""
    builder = DeltaTable.forPath(spark, location).optimize()
    if predicate:
        builder = builder.where(predicate)
    result = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
    m = result.select("metrics.numFilesRemoved", "metrics.numFilesAdded", "metrics.partitionsOptimized").first()
    return {"files_removed": int(m["numFilesRemoved"]), "files_added": int(m["numFilesAdded"]),
            "partitions_optimized": int(m["partitionsOptimized"])}


def retention_properties(retention_hours: int) -> dict[str, str]:
    """The table properties that carry the retention. Delta 4.x ignores VACUUM's ``RETAIN n HOURS`` (other
    than 0; ``spark.databricks.delta.vacuum.retentionWindowIgnore.enabled``) and uses the table's
    ``delta.deletedFileRetentionDuration``, which also bounds time travel. The log must be kept at least as
    long (``delta.logRetentionDuration``, default 30 days), or the old versions' commits would go first."""
    props = {"delta.deletedFileRetentionDuration": f"interval {retention_hours} hours"}
    if retention_hours > 30 * 24:
        props["delta.logRetentionDuration"] = f"interval {retention_hours} hours"
    return props


def vacuum_table(spark: SparkSession, location: str, retention_hours: int) -> int | None:
    """Set the retention on the table (a metadata commit, only when it changes), then VACUUM; the number
    of files deleted, as Delta's ``VACUUM END`` commit says."""
    current = table_properties(spark, location)
    wanted = retention_properties(retention_hours)
    if any(current.get(k) != v for k, v in wanted.items()):
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in wanted.items())
        spark.sql(f"ALTER TABLE {_sql_path(location)} SET TBLPROPERTIES ({assignments})")
    table = DeltaTable.forPath(spark, location)
    table.vacuum()  # the table's own retention
    last = table.history(1).select("operation", "operationMetrics").first()
    if last is None or last["operation"] != "VACUUM END":
        return None  # vacuum logging off (spark.databricks.delta.vacuum.logging.enabled)
    deleted = (last["operationMetrics"] or {}).get("numDeletedFiles")
    return int(deleted) if deleted is not None else None


def maintain_lake(spark: SparkSession, lake_root: str, days: list[str], mcfg: MaintenanceConfig) -> list[TableMaintenance]:
    """OPTIMIZE the ``days`` partitions of every Delta table under ``lake_root``, then VACUUM it."""
    where = days_predicate(days)
    done = []
    for name, location in lake_tables(spark, lake_root).items():
        t0 = time.monotonic()
        zorder = tuple(mcfg.zorder_by) if name in mcfg.zorder_tables else ()
        predicate, removed, added = None, None, None
        if mcfg.optimize:
            # Tables not partitioned by ds (none of the pipeline's) are small: compact them whole.
            predicate = where if "ds" in partition_columns(spark, location) else ""
            counts = optimize_table(spark, location, predicate, zorder)
            removed, added = counts["files_removed"], counts["files_added"]
        deleted = vacuum_table(spark, location, mcfg.vacuum_retention_hours) if mcfg.vacuum else None
        done.append(TableMaintenance(
            table=name, location=location, zorder_by=zorder, optimize_predicate=predicate, files_removed=removed,
            files_added=added, vacuum_retention_hours=mcfg.vacuum_retention_hours if mcfg.vacuum else None,
            vacuum_files_deleted=deleted, version=table_version(spark, location),
            seconds=round(time.monotonic() - t0, 3)))
    return done
