"""Resolve the pinned Delta Lake jars from Maven Central once, into .cache/jars (run by bootstrap.sh).

Spark's own Ivy resolution is used so that the transitive set is exactly what ``spark.jars.packages``
would load; afterwards every job passes the cached files with ``spark.jars`` and never needs the network.
"""
import shutil
import sys
from pathlib import Path

import pyspark
from importlib.metadata import version
from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parent.parent


def delta_coordinate() -> str:
    spark_mm = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_mm}_2.13:{version('delta-spark')}"


def main() -> int:
    if "--print-coordinate" in sys.argv:
        print(delta_coordinate())
        return 0
    ivy = ROOT / ".cache" / "ivy"
    out = ROOT / ".cache" / "jars"
    coord = delta_coordinate()
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("fetch-delta-jars")
        .config("spark.jars.packages", coord)
        .config("spark.jars.ivy", str(ivy))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.stop()
    jars = sorted((ivy / "jars").glob("*.jar"))
    if not any("delta-spark" in j.name for j in jars):
        print(f"resolution of {coord} produced no delta-spark jar: {jars}", file=sys.stderr)
        return 1
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for j in jars:
        shutil.copy2(j, tmp / j.name)
    (tmp / "COORDINATE").write_text(coord + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"delta jars for {coord}: {[j.name for j in jars]} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
