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
        # pyarrow is pinned to 14 for Petastorm; Spark's Arrow paths need >= 18, so keep them off.
        "spark.sql.execution.arrow.pyspark.enabled": "false",
        # Delta's replaceWhere must only ever touch the partitions a run names.
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "true",
    }
    conf.update(DELTA_CONF)
    if "spark.jars" not in (spark_conf or {}):
        # spark-submit --jars/--packages users may have put Delta on the classpath already.
        conf["spark.jars"] = ",".join(delta_jars())
    conf.update(dict(spark_conf or {}))
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def spark_submit_args() -> list[str]:
    """Options that give spark-submit / spark-sql the same Delta set-up as ``build_spark``."""
    jars = delta_jars()
    # --driver-class-path as well: spark-sql resolves the Delta extension before --jars are loaded.
    args = ["--jars", ",".join(jars), "--driver-class-path", ":".join(jars)]
    for k, v in {**DELTA_CONF, "spark.sql.session.timeZone": "UTC"}.items():
        args += ["--conf", f"{k}={v}"]
    return args


if __name__ == "__main__":
    if "--spark-sql-args" in sys.argv or "--spark-submit-args" in sys.argv:
        print(" ".join(spark_submit_args()))
