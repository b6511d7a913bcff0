"""A real Airflow run of the DAG (slow): ``airflow db migrate`` in a fresh AIRFLOW_HOME (SQLite), then
``airflow dags test dynamix_nightly <ds>`` in ``.venv-airflow``, which runs the four tasks' spark-submit lines
(``scripts/spark.sh submit``) one after the other on a generated day, after the ``wait_for_raw`` sensor has
found the day's ``_SUCCESS`` markers. The tables afterwards equal a ``jobs/nightly.py`` run of the same day;
without one source's marker the sensor (poke mode, a 20 s timeout here: ``DYNAMIX_RAW_*``) names the missing
file, fails, and no downstream task runs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, TEST_DATES
from dynamix_spark.config import load_config
from jobs import nightly
from test_nightly import _content

AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"
DS = TEST_DATES[0]
POLICIES = ["baseline", "remove_passive"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_delta_tasks")]


def _profile(root, name: str) -> str:
    """conf/local.yaml with the lake under ``root``, Spark's in-memory catalog and a 1.5 GB driver."""
    d = yaml.safe_load((ROOT / "conf" / "local.yaml").read_text())
    d["paths"].update(raw_root=f"{root}/raw", lake_root=f"{root}/lake_{name}", truth_root=f"{root}/truth",
                      database=f"airflow_{name}")
    d["spark"]["conf"] = {"spark.driver.memory": "1536m", "spark.sql.shuffle.partitions": "4",
                          "spark.ui.enabled": "false", "spark.databricks.delta.snapshotPartitions": "2",
                          "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2"}
    d["ebf"]["build_policies"] = POLICIES
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(p)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, tiny_cfg, tiny_raw):
    if not AIRFLOW.exists():
        pytest.skip(".venv-airflow not installed")
    root = tmp_path_factory.mktemp("airflow_run")
    shutil.copytree(tiny_cfg.paths.raw_root, root / "raw")
    home = root / "airflow_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAMIX_", "AIRFLOW", "PYTHON", "PYSPARK", "SPARK_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "DYNAMIX_RETRIES": "0",
                # the raw sensor: poke in-process (airflow dags test), give up after 20 s
                "DYNAMIX_RAW_SENSOR_MODE": "poke", "DYNAMIX_RAW_POKE_S": "2", "DYNAMIX_RAW_WAIT_S": "20"})
    r = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root, env


def _dags_test(root, env, profile: str):
    conf = json.dumps({"profile": profile, "spark_options": "--master 'local[1]'"})
    return subprocess.run([str(AIRFLOW), "dags", "test", "dynamix_nightly", DS, "-c", conf], env=env, cwd=root,
                          capture_output=True, text=True, timeout=3600)


def test_dags_test_runs_the_named_day_like_the_nightly_job(spark, airflow_env):
    root, env = airflow_env
    r = _dags_test(root, env, _profile(root, "dag"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert f"--ds {DS}" in out and "--ds 2026-10-30" not in out  # the day named, not the inferred interval's

    cfg_dag = load_config(_profile(root, "dag"))
    cfg_ref = load_config(_profile(root, "ref"))
    try:
        nightly.run(spark, cfg_ref, [DS])
        assert _content(spark, cfg_dag) == _content(spark, cfg_ref)
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {cfg_ref.paths.database} CASCADE")


def test_dags_test_without_the_marker_fails_the_sensor_and_nothing_downstream(airflow_env):
    root, env = airflow_env
    marker = root / "raw" / "conversions" / f"ds={DS}" / "_SUCCESS"
    marker.unlink()
    try:
        r = _dags_test(root, env, _profile(root, "nomarker"))
    finally:
        marker.write_text("")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "DagRun failed" in out, out[-6000:]
    assert f"waiting for: {root}/raw/conversions/ds={DS}/_SUCCESS" in out
    assert not (root / "lake_nomarker").exists()  # denoise never started
    assert _states(root, env) == {"wait_for_raw": "failed", "denoise": "upstream_failed",
                                  "user_window_stats": "upstream_failed", "build_ebf": "upstream_failed",
                                  "maintenance": "upstream_failed"}


def _states(root, env) -> dict[str, str]:
    """The task states of the latest run, from Airflow's metadata database."""
    def cli(*args):
        r = subprocess.run([str(AIRFLOW), *args, "-o", "json"], env=env, cwd=root, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("[")][-1])  # after any warnings
    runs = cli("dags", "list-runs", "dynamix_nightly")
    latest = max(runs, key=lambda x: x.get("start_date") or "")
    return {t["task_id"]: t["state"] for t in cli("tasks", "states-for-dag-run", "dynamix_nightly", latest["run_id"])}
