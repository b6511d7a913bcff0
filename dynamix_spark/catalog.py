"""Register the lake's Delta tables in a catalog database, so SQL can say ``dynamix.user_window_stats``.

Every folder directly under ``paths.lake_root`` that holds a ``_delta_log`` becomes an EXTERNAL table
``<paths.database>.<folder>`` whose LOCATION is that folder: dropping the catalog entry never deletes data,
and the schema is read from the Delta log at query time, so a new column needs no re-registration.
Registration is idempotent (a table already registered at the same location is left alone; one registered
elsewhere is re-pointed) and cheap, so the maintenance job runs it after every nightly run.

Where the catalog lives is session configuration, from the profile's ``spark.conf``:

- ``conf/local.yaml``: Spark's Hive catalog (``spark.sql.catalogImplementation: hive``) with an embedded
  Derby metastore in ``data/metastore_db`` and the warehouse in ``data/warehouse``. PySpark's pip package
  ships the Hive 2.3 client and Derby jars, so nothing more is installed. Embedded Derby admits one JVM at a
  time: while a ``spark-sql`` shell holds it, a job that touches the catalog waits/fails on the lock.
- ``conf/cluster.yaml``: a shared Hive metastore service (``spark.hadoop.hive.metastore.uris``).
- a session with the in-memory catalog (the tests, a profile without those settings): registration works
  the same but lasts only as long as the session; ``dynamix sql`` then registers at start.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return name


def lake_tables(spark: SparkSession, lake_root: str) -> dict[str, str]:
    """``{name: qualified location}`` of every Delta table directly under ``lake_root``, sorted by name.

    Lists through Hadoop's FileSystem (the same one Spark writes with), so ``s3a://`` and ``hdfs://`` lakes
    work like local ones and locations come back fully qualified (``file:/abs/path``), independent of the
    working directory a relative ``lake_root`` was written from.
    """
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(lake_root)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(root):
        return {}
    found: dict[str, str] = {}
    for status in fs.listStatus(root):
        path = status.getPath()
        name = path.getName()
        if not status.isDirectory() or not fs.exists(jvm.org.apache.hadoop.fs.Path(path, "_delta_log")):
            continue
        if not _IDENTIFIER.match(name):
            log.warning("not registering %s: %r is not a plain SQL identifier", path.toString(), name)
            continue
        found[name] = fs.makeQualified(path).toString()
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Registration:
    """What :func:`register_tables` did, by table name."""
    database: str
    catalog: str  # spark.sql.catalogImplementation: "hive" (persistent) or "in-memory" (this session only)
    created: tuple[str, ...]
    relocated: tuple[str, ...]
    unchanged: tuple[str, ...]
    stale: tuple[str, ...]  # registered in the database but no longer a Delta table in the lake (left alone)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(sorted(self.created + self.relocated + self.unchanged))

    def as_dict(self) -> dict:
        return {"database": self.database, "catalog": self.catalog, "created": list(self.created),
                "relocated": list(self.relocated), "unchanged": list(self.unchanged), "stale": list(self.stale)}


def _describe(spark: SparkSession, ident: str) -> dict[str, str]:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {ident}").collect()
    return {r["col_name"]: r["data_type"] for r in rows if r["col_name"] in ("Location", "Type", "Provider")}


def _sql_string(text: str) -> str:
    if "'" in text or "\\" in text:
        raise ValueError(f"refusing to put {text!r} into SQL (quote or backslash)")
    return f"'{text}'"


def register_tables(spark: SparkSession, lake_root: str, database: str) -> Registration:
    """Create ``database`` if needed and register every Delta table under ``lake_root`` in it (EXTERNAL)."""
    db = _check_identifier(database, "database")
    tables = lake_tables(spark, lake_root)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    created, relocated, unchanged = [], [], []
    for name, location in tables.items():
        ident = f"`{db}`.`{name}`"
        if spark.catalog.tableExists(f"{db}.{name}"):
            info = _describe(spark, ident)
            if info.get("Location") == location:
                unchanged.append(name)
                continue
            if info.get("Type", "").upper() != "EXTERNAL":
                # Dropping a managed table deletes its data: leave that decision to a person.
                raise RuntimeError(f"{db}.{name} is a {info.get('Type')} table at {info.get('Location')}, not the "
                                   f"lake's {location}; drop or rename it by hand")
            spark.sql(f"DROP TABLE {ident}")  # EXTERNAL: the data stays where it is
            relocated.append(name)
        else:
            created.append(name)
        spark.sql(f"CREATE TABLE IF NOT EXISTS {ident} USING DELTA LOCATION {_sql_string(location)}")
    registered = {t.name for t in spark.catalog.listTables(db) if not t.isTemporary}
    stale = sorted(registered - set(tables))
    catalog = spark.conf.get("spark.sql.catalogImplementation", "in-memory")
    if catalog != "hive":
        log.warning("catalog is %s: the tables registered in %s last only as long as this session", catalog, db)
    return Registration(db, catalog, tuple(created), tuple(relocated), tuple(unchanged), tuple(stale))
