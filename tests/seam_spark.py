"""The Spark side of the tests that cross the seam between the two environments.

The training environment (.venv-train) has no PySpark, but its tests must read tables that delta-spark
really wrote and compare against what delta-spark really reports. They call :func:`spark_steps`, which runs
this file with the Spark environment's Python (``.venv/bin/python``, or ``$DYNAMIX_SPARK_PYTHON``) on a list
of steps, all in one local SparkSession (the test session's settings, ``conftest.TEST_SPARK_CONF``):

- ``{"op": "write_ebf", "path": P, "rows": [...], "mode": "append"|"overwrite", "where": SQL|None,
  "coalesce": n | "repartition": n}``: the rows (dicts, as in tests/seam_data.py) as an ``ebf_examples``
  DataFrame (``schemas.ebf.EBF_EXAMPLES``) written with ``format("delta").partitionBy("ds", "policy",
  "segment")``;
- ``{"op": "sql", "query": Q}``: ``spark.sql(Q).collect()`` as a list of dicts;
- ``{"op": "input_files", "path": P, "version": v}``: ``spark.read.format("delta").option("versionAsOf", v)
  .load(P).inputFiles()``.
- ``{"op": "ledger", "lake": L, "run_id": R, "job": J, "ds": D, "versions": {table: v}}``: a published run's row
  in ``L/run_ledger`` (``dynamix_spark.ledger.append_ledger``, what every job appends after its last commit).

The result is a JSON list, one entry per step. Command line: ``python tests/seam_spark.py STEPS.json OUT.json``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spark_python() -> str:
    return os.environ.get("DYNAMIX_SPARK_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


def spark_steps(steps: list[dict], timeout: int = 900) -> list:
    """Run ``steps`` in the Spark environment (a subprocess with its own JVM); their results."""
    py = spark_python()
    env = {**os.environ, "PYSPARK_PYTHON": py, "PYSPARK_DRIVER_PYTHON": py, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="seam-") as d:
        src, dst = Path(d) / "steps.json", Path(d) / "result.json"
        src.write_text(json.dumps(steps))
        res = subprocess.run([py, __file__, str(src), str(dst)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"{py} tests/seam_spark.py failed ({res.returncode}):\n"
                               f"{res.stdout[-2000:]}\n{res.stderr[-6000:]}")
        return json.loads(dst.read_text())


def _run(spark, step: dict):
    op = step["op"]
    if op == "write_ebf":
        from schemas.ebf import EBF_EXAMPLES

        names = [f.name for f in EBF_EXAMPLES.fields]
        df = spark.createDataFrame([tuple(r[n] for n in names) for r in step["rows"]], EBF_EXAMPLES)
        if step.get("coalesce"):
            df = df.coalesce(step["coalesce"])
        if step.get("repartition"):
            df = df.repartition(step["repartition"])
        w = df.write.format("delta").mode(step.get("mode", "append")).partitionBy("ds", "policy", "segment")
        if step.get("where"):
            w = w.option("replaceWhere", step["where"])
        w.save(step["path"])
        return None
    if op == "sql":
        return [r.asDict() for r in spark.sql(step["query"]).collect()]
    if op == "ledger":
        from dynamix_spark.ledger import append_ledger

        append_ledger(spark, step["lake"], run_id=step["run_id"], job=step["job"], ds=step["ds"],
                      versions=step["versions"])
        return None
    if op == "input_files":
        return list(spark.read.format("delta").option("versionAsOf", step["version"]).load(step["path"])
                    .inputFiles())
    raise ValueError(f"unknown step {op!r}")


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import TEST_SPARK_CONF
    from dynamix_spark.session import build_spark

    steps = json.loads(Path(argv[0]).read_text())
    spark = build_spark("dynamix-tests-seam", TEST_SPARK_CONF, master="local[2]")
    try:
        out = [_run(spark, s) for s in steps]
    finally:
        spark.stop()
    Path(argv[1]).write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
