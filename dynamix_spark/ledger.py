"""The run ledger: readers see whole runs, never half of one.

A job writes several tables in separate Delta commits (denoise: 4 clean tables and quarantine; user_window_stats:
user_window_stats and user_segments; build_ebf: ebf_examples). Each commit is atomic, the job is not: a run
killed between two commits leaves some of its tables at the new version and some at the old one. So a run
publishes in one more step, after its last commit: one row appended to ``run_ledger`` (``schemas.tables.RUN_LEDGER``)
with the version of every table it committed (:func:`append_ledger`, called by
:meth:`dynamix_spark.staged_write.StagedWrite.record_run`). Until that row exists the run is invisible to readers.

Which version a reader takes for table T and day D (:func:`published_versions`):

1. the largest version recorded for T by a ledger row of ``ds = D`` (each job run writes only its own day's
   partition, and a table's versions only grow, so the largest is the newest run that published D);
2. rolled forward over the later commits that leave D's rows as they were: commits that touch no file of
   partition D (a run of another day, whose ``replaceWhere`` is that day's) and commits whose actions are all
   ``dataChange = false`` (OPTIMIZE). The first later commit that adds or removes a file of D with
   ``dataChange = true`` (a run of D that has not published, or an operator's DELETE) stops it. Reading the
   rolled-forward version gives the same rows as the recorded one, but from files that VACUUM keeps: the
   recorded version's own files may be compacted away and, after ``maintenance.vacuum_retention_hours``,
   deleted (a backfill re-reading an old day would otherwise fail). Where the commits after the recorded version
   are no longer in the log, the recorded version is used as it is;
3. no ledger row for D (a lake from before the ledger, or a day never published): the latest version, as before.

:func:`read_published` reads T for a set of days that way (one scan per distinct version). The training side
does the same without a JVM (``training.delta_snapshot.published_snapshot``); the SQL form is in
docs/OPERATIONS.md section 4.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Iterable, Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, MapType, StringType, StructField, StructType

from dynamix_spark.delta_io import append_with_retry, is_delta, table_path
from schemas.names import RUN_LEDGER_TABLE
from schemas.tables import RUN_LEDGER

_COMMIT = re.compile(r"^(\d{20})\.json$")
# The part of a commit's actions the roll-forward needs (explicit, so Spark reads the JSON in one pass).
_FILE_ACTION = StructType([StructField("path", StringType()), StructField("dataChange", BooleanType()),
                           StructField("partitionValues", MapType(StringType(), StringType()))])
_ACTIONS = StructType([StructField("add", _FILE_ACTION), StructField("remove", _FILE_ACTION)])


def append_ledger(spark: SparkSession, lake_root: str, *, run_id: str, job: str, ds: str,
                  versions: Mapping[str, int]) -> None:
    """Publish a run: one ``run_ledger`` row with ``versions`` ({table: version committed}), in one append.
    Call it after the run's last commit; a run that committed nothing (``versions`` empty) records nothing."""
    if not versions:
        return
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # session time zone is UTC
    row = (run_id, job, ds, now, {t: int(v) for t, v in versions.items()})
    append_with_retry(spark.createDataFrame([row], RUN_LEDGER), table_path(lake_root, RUN_LEDGER_TABLE))


def recorded_versions(spark: SparkSession, lake_root: str, table: str, days: Iterable[str]) -> dict[str, int]:
    """{day: the largest version of ``table`` a ledger row of that day recorded}; days without one are absent."""
    days = sorted(set(days))
    path = table_path(lake_root, RUN_LEDGER_TABLE)
    if not days or not is_delta(spark, path):
        return {}
    rows = (spark.read.format("delta").load(path).where(F.col("ds").isin(days))
            .select("ds", F.col("versions")[table].alias("v")).where(F.col("v").isNotNull())
            .groupBy("ds").agg(F.max("v").alias("v")).collect())
    return {r["ds"]: int(r["v"]) for r in rows}


def published_run(spark: SparkSession, lake_root: str, job: str, ds: str) -> str | None:
    """The run_id of the last run of ``job`` that published ``ds`` (its latest ledger row), or None."""
    path = table_path(lake_root, RUN_LEDGER_TABLE)
    if not is_delta(spark, path):
        return None
    last = (spark.read.format("delta").load(path).where((F.col("ds") == ds) & (F.col("job") == job))
            .orderBy(F.col("committed_at").desc()).select("run_id").limit(1).collect())
    return last[0]["run_id"] if last else None


def _hadoop_fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return jvm, p, p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def _commits(spark: SparkSession, table: str) -> dict[int, str]:
    """{version: qualified path} of the JSON commits in the table's ``_delta_log`` (any Hadoop file system)."""
    jvm, log, fs = _hadoop_fs(spark, f"{table.rstrip('/')}/_delta_log")
    out = {}
    for st in fs.listStatus(log):
        if m := _COMMIT.match(st.getPath().getName()):
            out[int(m.group(1))] = fs.makeQualified(st.getPath()).toString()
    return out


def roll_forward(spark: SparkSession, table: str, recorded: Mapping[str, int]) -> dict[str, int]:
    """{day: the newest version whose rows of ``day`` are those of ``recorded[day]``} (the module's rule 2)."""
    if not recorded:
        return {}
    commits = _commits(spark, table)
    latest = max(commits, default=max(recorded.values()))
    first = min(recorded.values()) + 1
    later = range(first, latest + 1)
    if not later or any(v not in commits for v in later):  # none, or cleaned up: keep the recorded versions
        return dict(recorded)
    file_version = F.regexp_extract(F.input_file_name(), r"(\d{20})\.json$", 1).cast("long")
    actions = spark.read.schema(_ACTIONS).json([commits[v] for v in later]).select(
        file_version.alias("version"),
        F.explode(F.array(F.col("add"), F.col("remove"))).alias("a"))
    changes = (actions.where(F.col("a").isNotNull() & F.coalesce(F.col("a.dataChange"), F.lit(True)))
               .select("version", F.col("a.partitionValues")["ds"].alias("ds"))
               .where(F.col("ds").isin(list(recorded))).distinct().collect())
    out = {}
    for day, v in recorded.items():
        stops = [r["version"] for r in changes if r["ds"] == day and r["version"] > v]
        out[day] = min(stops) - 1 if stops else latest
    return out


def published_versions(spark: SparkSession, lake_root: str, table: str, days: Iterable[str]) -> dict[str, int | None]:
    """{day: the version to read ``table``'s partition of that day at}; None where no run of the day is in the
    ledger (read the latest)."""
    days = sorted(set(days))
    recorded = recorded_versions(spark, lake_root, table, days)
    rolled = roll_forward(spark, table_path(lake_root, table), recorded)
    return {d: rolled.get(d) for d in days}


def read_published(spark: SparkSession, lake_root: str, table: str, days: Iterable[str]) -> DataFrame:
    """The rows of ``table`` for ``days``, each day as the last run that published it left it
    (:func:`published_versions`): one scan per distinct version, unioned."""
    days = sorted(set(days))
    path = table_path(lake_root, table)
    by_version: dict[int | None, list[str]] = {}
    for d, v in published_versions(spark, lake_root, table, days).items():
        by_version.setdefault(v, []).append(d)
    parts = []
    for v, ds in sorted(by_version.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        reader = spark.read.format("delta")
        if v is not None:
            reader = reader.option("versionAsOf", v)
        parts.append(reader.load(path).where(F.col("ds").isin(ds)))
    if not parts:  # no days asked: the table's schema, no rows
        return spark.read.format("delta").load(path).where(F.lit(False))
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
