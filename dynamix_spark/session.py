"""SparkSession construction with the pinned Delta Lake jars from the local cache.

The master is never set here: spark-submit (or, for a plain ``python jobs/x.py``, PySpark's default
``local[*]``) owns it. Settings come from ``conf/`` (``spark.conf``) and from spark-submit.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

from pyspark.sql import SparkSession

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JAR_CACHE = Path(os.environ.get("DYNAMIX_JAR_CACHE", PROJECT_ROOT / ".cache" / "jars"))
# Only Delta's own jars go on the classpath: the other artifacts Ivy resolves (Hadoop client, Jackson,
# Parquet, log4j) are already in Spark's distribution, and second copies are a classpath hazard.
_JAR_PREFIXES = ("io.delta_delta-spark", "io.delta_delta-storage")

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars(cache: Path = JAR_CACHE) -> list[str]:
    """The cached Delta jars; a clear error if ``scripts/bootstrap.sh`` has not resolved them."""
    jars = sorted(str(p) for p in cache.glob("*.jar") if p.name.startswith(_JAR_PREFIXES))
    if not any("delta-spark" in j for j in jars):
        raise RuntimeError(
            f"Delta Lake jars not found in {cache}; run `bash scripts/bootstrap.sh` once to resolve them"
        )
    return jars


def _submitted_with_jars() -> bool:
    """Whether spark-submit launched this driver with ``--jars`` / ``--packages`` (scripts/spark.sh does).

    Then Delta is on the classpath already and the cache may not exist where the driver runs (a YARN
    container, or the library imported from the ``--py-files`` zip, whose ``PROJECT_ROOT`` is no checkout).
    Only asked when spark-submit started the JVM (``PYSPARK_GATEWAY_PORT``): for a plain ``python job.py``
    creating a SparkConf here would start the JVM before the builder's settings (driver memory) apply.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return False
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # attach to spark-submit's JVM, whose system properties hold its conf
    submitted = SparkConf()
    return bool(submitted.get("spark.jars", "") or submitted.get("spark.jars.packages", ""))


def build_spark(app_name: str, spark_conf: Mapping[str, str] | None = None, *,
                master: str | None = None) -> SparkSession:
    """Create (or reuse) the session with Delta's SQL extension and catalog and the cached jars.

    ``master`` exists for tests and benchmarks only; jobs leave it to spark-submit.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    conf: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.showConsoleProgress": "false",
        # Arrow for toPandas / createDataFrame(pandas): off, no job hands pandas frames across (the EBF build's
        # mapInArrow does not depend on this flag).
        "spark.sql.execution.arrow.pyspark.enabled": "false",
        # Delta's replaceWhere must only ever touch the partitions a run names.
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "true",
        # Parquet TIMESTAMP(NANOS) (pandas' default to_parquet) reads as bigint epoch nanoseconds, which
        # raw_io converts to the contract's timestamp; without it Spark refuses such a file. Nothing else changes:
        # no other Parquet type reads differently, and the pipeline writes no nanosecond timestamps.
        "spark.sql.legacy.parquet.nanosAsLong": "true",
    }
    conf.update(DELTA_CONF)
    if not {"spark.jars", "spark.jars.packages"} & set(spark_conf or {}) and not _submitted_with_jars():
        conf["spark.jars"] = ",".join(delta_jars())
    conf.update(dict(spark_conf or {}))
    ensure_event_log_dir(conf)
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def ensure_event_log_dir(conf: Mapping[str, str]) -> None:
    """Spark refuses to start with event logs on and a missing local log folder: create it (local paths and
    ``file:`` URIs only; a cluster's hdfs:/s3: folder is the operator's)."""
    if str(conf.get("spark.eventLog.enabled", "false")).lower() != "true":
        return
    d = str(conf.get("spark.eventLog.dir", "/tmp/spark-events"))
    if d.startswith("file:"):
        d = d[len("file:"):]
    elif "://" in d or (":" in d.split("/")[0]):
        return
    os.makedirs(d, exist_ok=True)


# The settings that say where the catalog lives. spark-sql (scripts/spark.sh sql) and the Thrift server
# (scripts/sql_server.sh) take them from the profile, so that they see the tables the jobs registered
# (dynamix_spark/catalog.py). spark.driver.extraClassPath is one of them: a metastore reached through a
# JDBC driver that Spark does not ship (Derby's network client in conf/local_shared.yaml) needs it there.
CATALOG_CONF_PREFIXES = ("spark.sql.catalogImplementation", "spark.sql.warehouse.dir", "spark.hadoop.javax.jdo.",
                         "spark.hadoop.hive.", "spark.hadoop.datanucleus.", "spark.sql.hive.",
                         "spark.driver.extraClassPath")


def catalog_conf(spark_conf: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in spark_conf.items() if k.startswith(CATALOG_CONF_PREFIXES)}


def spark_submit_args(extra_conf: Mapping[str, str] | None = None) -> list[str]:
    """Options that give spark-submit / spark-sql the same Delta set-up as ``build_spark`` (plus ``extra_conf``)."""
    jars = delta_jars()
    extra = dict(extra_conf or {})
    # --driver-class-path as well: spark-sql resolves the Delta extension before --jars are loaded. A
    # spark.driver.extraClassPath of extra_conf joins it (a second --driver-class-path would replace it).
    class_path = ":".join([*jars, *filter(None, [extra.pop("spark.driver.extraClassPath", "")])])
    args = ["--jars", ",".join(jars), "--driver-class-path", class_path]
    for k, v in {**DELTA_CONF, "spark.sql.session.timeZone": "UTC", **extra}.items():
        args += ["--conf", f"{k}={v}"]
    return args


if __name__ == "__main__":
    # python -m dynamix_spark.session --spark-submit-args [--catalog-of conf/<profile>.yaml]: one argument a line.
    if "--spark-sql-args" in sys.argv or "--spark-submit-args" in sys.argv:
        extra: dict[str, str] = {}
        if "--catalog-of" in sys.argv:
            from dynamix_spark.config import load_config

            extra = catalog_conf(load_config(sys.argv[sys.argv.index("--catalog-of") + 1]).spark.conf)
        print("\n".join(spark_submit_args(extra)))
