"""Resolve Derby's network server and client jars from Maven Central once, into .cache/derby (bootstrap.sh).

The pyspark wheel ships Derby's engine (``derby``, ``derbyshared``, ``derbytools``) for the embedded metastore,
but not ``derbynet`` (the network server) nor ``derbyclient`` (its JDBC driver), which the shared local
catalog needs (scripts/sql_server.sh, docs/OPERATIONS.md section 3). They are resolved at exactly the
version of the wheel's ``derby-*.jar`` (a server and an engine of different versions refuse the database),
with Spark's own Ivy like the Delta jars; only those two jars are kept, the engine stays the wheel's.
"""
import os
import re
import shutil
import sys
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parent.parent
KEEP = ("derbynet", "derbyclient")


def derby_version() -> str:
    jars = Path(os.path.dirname(pyspark.__file__)) / "jars"
    found = [m.group(1) for p in jars.glob("derby-*.jar") if (m := re.fullmatch(r"derby-([0-9.]+)\.jar", p.name))]
    if len(found) != 1:
        raise SystemExit(f"expected one derby-<version>.jar in {jars}, found {found}")
    return found[0]


def coordinates() -> str:
    return ",".join(f"org.apache.derby:{a}:{derby_version()}" for a in KEEP)


def main() -> int:
    if "--print-coordinate" in sys.argv:
        print(coordinates())
        return 0
    ivy = ROOT / ".cache" / "ivy-derby"
    out = ROOT / ".cache" / "derby"
    coord = coordinates()
    spark = (SparkSession.builder.master("local[1]").appName("fetch-derby-jars")
             .config("spark.jars.packages", coord).config("spark.jars.ivy", str(ivy))
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.stop()
    version = derby_version()
    jars = [ivy / "jars" / f"org.apache.derby_{a}-{version}.jar" for a in KEEP]
    missing = [j.name for j in jars if not j.exists()]
    if missing:
        print(f"resolution of {coord} did not produce {missing}", file=sys.stderr)
        return 1
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for a, j in zip(KEEP, jars):
        shutil.copy2(j, tmp / f"{a}.jar")  # a fixed name: profiles and scripts name the file, not the version
    (tmp / "COORDINATE").write_text(coord + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"derby jars for {coord} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
