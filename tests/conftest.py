"""One session-scoped SparkSession (local[2], UTC, few shuffle partitions, UI off, Delta on) and one
small generated dataset that the pipeline runs over once for the tests that read its outputs.

Imported in both environments: the Spark side's (.venv) and the training side's (.venv-train, no PySpark),
so nothing here imports pyspark before a Spark fixture is used. Training-side tests get Spark-written data
from ``tests/seam_spark.py`` run with the Spark side's Python (``SPARK_PYTHON``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dynamix_spark.config import load_config  # noqa: E402

TEST_DATES = ("2026-11-01", "2026-11-02", "2026-11-03")
MID_DS = TEST_DATES[1]  # has both neighbours
# The test session's Spark settings; tests/seam_spark.py (the training side's Spark) uses the same.
TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "4g",
    "spark.sql.adaptive.enabled": "true",
}
# What few_delta_tasks sets (see there).
FEW_DELTA_TASKS_CONF = {"spark.databricks.delta.snapshotPartitions": "2",
                        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2"}


@pytest.fixture(scope="session")
def spark():
    from dynamix_spark.session import build_spark

    session = build_spark("dynamix-tests", TEST_SPARK_CONF, master="local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def few_delta_tasks(spark):
    """Delta reconstructs a snapshot in 50 partitions and VACUUM lists folders with up to 10,000 tasks by
    default; on the 2-core test machine that is a minute per VACUUM of a 2-file table. Set for one test
    module (``pytestmark = pytest.mark.usefixtures("few_delta_tasks")``), restored afterwards."""
    small = FEW_DELTA_TASKS_CONF
    before = {k: spark.conf.get(k, None) for k in small}
    for k, v in small.items():
        spark.conf.set(k, v)
    yield
    for k, v in before.items():
        spark.conf.unset(k) if v is None else spark.conf.set(k, v)


def tiny_overrides(root: Path) -> list[str]:
    return [
        f"paths.raw_root={root}/raw",
        f"paths.lake_root={root}/lake",
        f"paths.truth_root={root}/truth",
        f"quality.docs_dir={root}/quality_docs",  # the tests' Data Docs stay under their temporary folder
        f"generator.start_date={TEST_DATES[0]}",
        f"generator.days={len(TEST_DATES)}",
        "generator.n_users=150",
        "generator.power_user_share=0.02",
        "generator.files_per_partition=2",
        "spark.conf={}",
    ]


def lake_config(root: Path, *overrides: str):
    """conf/local.yaml with the raw data, the lake, the planted truth and the Data Docs under ``root`` (a test
    writes nothing into the checkout) and Spark's settings left to the session's; ``overrides`` come last and
    win (``"quality.docs_dir=''"``: no Data Docs)."""
    return load_config(ROOT / "conf" / "local.yaml", [
        f"paths.raw_root={root}/raw", f"paths.lake_root={root}/lake", f"paths.truth_root={root}/truth",
        f"quality.docs_dir={root}/quality_docs", "spark.conf={}", *overrides])


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return load_config(ROOT / "conf" / "local.yaml", tiny_overrides(root))


@pytest.fixture(scope="session")
def tiny_raw(spark, tiny_cfg):
    """The generator's output for 3 days (raw Parquet + truth)."""
    from dynamix_spark.generate import write_raw

    counts = write_raw(spark, tiny_cfg.generator, tiny_cfg.paths.raw_root, tiny_cfg.paths.truth_root)
    return counts


@pytest.fixture(scope="session")
def tiny_pipeline(spark, tiny_cfg, tiny_raw):
    """denoise for the three days, then user_window_stats for the middle day."""
    from jobs import denoise, user_window_stats

    outcomes = {ds: denoise.run(spark, tiny_cfg, ds) for ds in TEST_DATES}
    stats = user_window_stats.run(spark, tiny_cfg, MID_DS)
    return {"denoise": outcomes, "stats": stats}
