"""SQL for analysts while the nightly runs (issue 18, section 3): ``scripts/sql_server.sh`` starts Derby's network
server (the metastore, shared) and Spark's Thrift JDBC server; beeline queries ``<db>.user_segments`` through
the Thrift server while a nightly run, submitted with a profile that extends ``conf/local_shared.yaml``,
rewrites the day and registers its tables in the same metastore. Both succeed, every answer equals the
counts read from the Delta table by this process's own Spark, and ``stop`` leaves no process behind.

The quick tests check the script's argument handling and ``status`` without starting a JVM server.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TEST_DATES
from dynamix_spark.config import load_config
from procs import free_port

DS = TEST_DATES[0]
SQL_SERVER = ROOT / "scripts" / "sql_server.sh"
SPARK_SH = ROOT / "scripts" / "spark.sh"
BEELINE = ROOT / ".venv" / "lib" / "python3.11" / "site-packages" / "pyspark" / "bin" / "beeline"
DB = "sqlsrv"
QUERY = f"SELECT segment, count(*) AS n FROM {DB}.user_segments WHERE ds = '{DS}' GROUP BY segment ORDER BY segment"


def _env(root: Path, thrift_port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_", "PYTHONPATH"))}
    env.update({"SQL_SERVER_DIR": str(root / "sql_server"), "THRIFT_PORT": str(thrift_port),
                "THRIFT_DRIVER_MEMORY": "1g"})
    return env


def _profile(root: Path, derby_port: int) -> str:
    """A profile that extends conf/local_shared.yaml: the lake and the metastore under ``root`` (an absolute
    database path in the Derby URL), Derby on ``derby_port``, small Spark settings."""
    d = {
        "extends": str(ROOT / "conf" / "local_shared.yaml"),
        "paths": {"raw_root": f"{root}/raw", "lake_root": f"{root}/lake", "truth_root": f"{root}/truth",
                  "database": DB},
        "spark": {"conf": {
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby://127.0.0.1:{derby_port}/{root}/metastore_db;create=true",
            "spark.sql.warehouse.dir": f"{root}/warehouse",
            "spark.driver.memory": "1536m", "spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
            "spark.eventLog.enabled": "false"}},
        "ebf": {"build_policies": ["baseline", "remove_passive"]},
        "quality": {"docs_dir": f"{root}/quality_docs"},
    }
    p = root / "shared.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(p)


def _script(*args: str, env: dict, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SQL_SERVER), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


# ---- quick: argument handling and status, no server started

def test_usage_and_a_profile_without_a_network_metastore_exit_2(tmp_path):
    env = _env(tmp_path, free_port())
    r = _script(env=env)
    assert r.returncode == 2 and "usage: scripts/sql_server.sh start|stop|status" in r.stderr
    r = _script("restart", env=env)
    assert r.returncode == 2 and "usage" in r.stderr
    r = _script("status", "--profile", env=env)
    assert r.returncode == 2 and "usage" in r.stderr
    # The embedded profile has no server to start: said before anything starts.
    r = _script("start", "--profile", "conf/local.yaml", env=env)
    assert r.returncode == 2 and "is not a Derby network URL" in r.stderr, r.stderr
    assert not (tmp_path / "sql_server").exists()


def test_status_and_stop_with_nothing_started(tmp_path):
    env = _env(tmp_path, free_port())
    profile = _profile(tmp_path, free_port())
    r = _script("status", "--profile", profile, env=env)
    assert r.returncode == 1
    assert "Derby network server: not running" in r.stdout and "Thrift server: not running" in r.stdout
    r = _script("stop", "--profile", profile, env=env)
    assert r.returncode == 0 and "stopped" not in r.stdout


def test_the_shared_profile_is_the_local_one_with_the_network_metastore():
    local, shared = load_config(ROOT / "conf" / "local.yaml"), load_config(ROOT / "conf" / "local_shared.yaml")
    changed = {k for k in {*local.spark.conf, *shared.spark.conf} if local.spark.conf.get(k) != shared.spark.conf.get(k)}
    assert changed == {"spark.hadoop.javax.jdo.option.ConnectionURL",
                       "spark.hadoop.javax.jdo.option.ConnectionDriverName", "spark.driver.extraClassPath"}
    assert shared.spark.conf["spark.hadoop.javax.jdo.option.ConnectionURL"].startswith(
        "jdbc:derby://127.0.0.1:1527/data/metastore_db;")
    assert (shared.paths, shared.ebf, shared.maintenance) == (local.paths, local.ebf, local.maintenance)


def test_catalog_args_put_the_jdbc_driver_on_the_driver_class_path(monkeypatch, tmp_path):
    from dynamix_spark import session

    monkeypatch.setattr(session, "delta_jars", lambda: ["/c/delta.jar"])
    conf = session.catalog_conf(load_config(ROOT / "conf" / "local_shared.yaml").spark.conf)
    args = session.spark_submit_args(conf)
    assert args[args.index("--driver-class-path") + 1] == "/c/delta.jar:.cache/derby/derbyclient.jar"
    assert args.count("--driver-class-path") == 1 and "spark.driver.extraClassPath" not in " ".join(args)
    assert "spark.driver.memory" not in conf  # only the catalog's settings, not the jobs' resources


# ---- slow: the servers for real, beeline during a nightly run

def _beeline(port: int, sql: str, timeout: int = 300) -> tuple[float, float, int, str]:
    t0 = time.time()
    r = subprocess.run([str(BEELINE), "-u", f"jdbc:hive2://127.0.0.1:{port}/", "--silent=true",
                        "--outputformat=tsv2", "-e", sql], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))})
    return t0, time.time(), r.returncode, r.stdout + r.stderr


def _rows(out: str) -> list[tuple[int, int]]:
    """The (segment, n) rows of a tsv2 answer (beeline echoes its prompt before the header line)."""
    lines = [ln.strip() for ln in out.splitlines()]
    header = next(i for i, ln in enumerate(lines) if ln.endswith("segment\tn"))
    rows = []
    for ln in lines[header + 1:]:
        parts = ln.split("\t")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            break
        rows.append((int(parts[0]), int(parts[1])))
    return rows


@pytest.mark.slow
@pytest.mark.usefixtures("few_delta_tasks")
def test_beeline_answers_while_a_nightly_registers_its_tables(spark, tmp_path, tiny_cfg, tiny_raw):
    from jobs import nightly

    root = tmp_path
    shutil.copytree(tiny_cfg.paths.raw_root, root / "raw")
    thrift_port, derby_port = free_port(), free_port()
    env = _env(root, thrift_port)
    profile = _profile(root, derby_port)
    cfg = load_config(profile)
    timings: dict = {}

    # The day's tables, written by this process (its in-memory catalog); the expected answer from Delta itself.
    t = time.time()
    nightly.run(spark, cfg, [DS])
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")  # this session's in-memory catalog only
    timings["first_run_in_process_s"] = time.time() - t
    expected = sorted((r["segment"], r["count"]) for r in spark.read.format("delta")
                      .load(f"{cfg.paths.lake_root}/user_segments").where(f"ds = '{DS}'").groupBy("segment").count()
                      .collect())
    assert len(expected) == 2 and sum(n for _, n in expected) > 0

    t = time.time()
    r = _script("start", "--profile", profile, env=env, timeout=600)
    timings["start_s"] = time.time() - t
    pids = [int(p.read_text()) for p in (root / "sql_server").glob("*.pid")]
    try:
        assert r.returncode == 0, r.stdout + r.stderr + (root / "sql_server" / "thrift.log").read_text()[-4000:]
        assert len(pids) == 2
        assert _script("status", "--profile", profile, env=env).returncode == 0

        # An analyst registers the one table they query, through the server (the nightly registers the rest).
        location = f"file:{cfg.paths.lake_root}/user_segments"
        _, _, rc, out = _beeline(thrift_port, f"CREATE DATABASE IF NOT EXISTS {DB}; "
                                              f"CREATE TABLE {DB}.user_segments USING DELTA LOCATION '{location}'")
        assert rc == 0, out[-3000:]

        # The nightly re-runs the day (same raw input: the same rows) with the shared profile, the way the DAG
        # submits it; beeline queries one after the other until it has finished, and once more afterwards.
        log, report = root / "nightly.log", root / "report.json"
        t_nightly = time.time()
        p = subprocess.Popen(["bash", str(SPARK_SH), "submit", "--master", "local[2]", "jobs/nightly.py",
                              "--config", profile, "--ds", DS, "--report", str(report)],
                             cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        queries = []
        try:
            while p.poll() is None:
                queries.append(_beeline(thrift_port, QUERY))
            queries.append(_beeline(thrift_port, QUERY))
        finally:
            if p.poll() is None:
                os.killpg(p.pid, 9)
        t_nightly_end = time.time()  # at most one query after the nightly's exit
        rc_nightly = p.wait()
        timings["nightly_s"] = t_nightly_end - t_nightly
        assert rc_nightly == 0, log.read_text()[-6000:]

        # The nightly registered its tables in the shared metastore, next to the analyst's entry.
        catalog = json.loads(report.read_text())["maintenance"]["catalog"]
        assert catalog["catalog"] == "hive" and catalog["unchanged"] == ["user_segments"]
        lake_tables = sorted(d.name for d in Path(cfg.paths.lake_root).iterdir() if (d / "_delta_log").is_dir())
        assert sorted(catalog["created"]) == sorted(set(lake_tables) - {"user_segments"})
        # Registration is the last thing the nightly does, after maintenance's run_metrics append.
        reg_start = max(f.stat().st_mtime for f in Path(cfg.paths.lake_root, "run_metrics", "_delta_log").glob("*.json"))

        for t0, t1, rc, out in queries:  # every answer, before, during and after the nightly's writes
            assert rc == 0 and _rows(out) == expected, out[-3000:]
        during = [q for q in queries if q[0] >= t_nightly and q[1] <= t_nightly_end]
        registering = [q for q in queries if q[0] <= t_nightly_end and q[1] >= reg_start]
        assert during, "no beeline query ran while the nightly ran"
        assert registering, "no beeline query overlapped the nightly's catalog registration"
        _, _, rc, out = _beeline(thrift_port, f"SHOW TABLES IN {DB}")
        assert rc == 0 and all(f"{DB}\t{t}\tfalse" in out for t in lake_tables), out[-3000:]
        timings.update(queries=len(queries), queries_during_nightly=len(during),
                       registration_to_exit_s=t_nightly_end - reg_start,
                       beeline_query_s=[round(q[1] - q[0], 1) for q in queries])
    finally:
        t = time.time()
        r = _script("stop", "--profile", profile, env=env, timeout=180)
        timings["stop_s"] = time.time() - t
        (root / "timings.json").write_text(json.dumps(timings, indent=1))
        print("sql server timings:", json.dumps(timings))
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(1)
    assert not [pid for pid in pids if _alive(pid)]  # stop stopped exactly what start started
    assert not list((root / "sql_server").glob("*.pid"))
