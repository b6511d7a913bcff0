"""Beyond one JVM (slow, issue 18): a real Spark standalone cluster started by ``scripts/cluster.sh`` (a
master and two 1-core workers on 127.0.0.1), the nightly for a generated day submitted to it with
``scripts/spark.sh submit --master spark://...`` (the --py-files zip, Delta jars shipped to executors that are
other processes); then the same with one worker JVM and its executor killed with SIGKILL in the middle of
build_ebf. Every table's row multiset equals a local run of the same day (the reference, in this process).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TEST_DATES
from dynamix_spark.config import load_config
from jobs import nightly
from procs import free_port
from test_nightly import _content

DS = TEST_DATES[0]
POLICIES = ["baseline", "remove_passive"]
CLUSTER = ROOT / "scripts" / "cluster.sh"
SPARK_SH = ROOT / "scripts" / "spark.sh"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_delta_tasks")]


def _profile(root: Path, name: str) -> str:
    """conf/local.yaml with the lake under ``root`` and Spark's in-memory catalog (no shared Derby)."""
    d = yaml.safe_load((ROOT / "conf" / "local.yaml").read_text())
    d["paths"].update(raw_root=f"{root}/raw", lake_root=f"{root}/lake_{name}", truth_root=f"{root}/truth",
                      database=f"cluster_{name}")
    d["spark"]["conf"] = {"spark.driver.memory": "1536m", "spark.sql.shuffle.partitions": "4",
                          "spark.ui.enabled": "false", "spark.databricks.delta.snapshotPartitions": "2",
                          "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
                          "spark.executor.memory": "1g",
                          "spark.eventLog.enabled": "true", "spark.eventLog.dir": f"{root}/events"}
    d["ebf"]["build_policies"] = POLICIES
    d.setdefault("quality", {})["docs_dir"] = f"{root}/quality_docs_{name}"
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(p)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_cfg, tiny_raw):
    root = tmp_path_factory.mktemp("cluster")
    shutil.copytree(tiny_cfg.paths.raw_root, root / "raw")
    port, ui = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_", "PYTHONPATH"))}
    env.update({"CLUSTER_DIR": str(root / "cluster"), "SPARK_MASTER_PORT": str(port),
                "SPARK_MASTER_WEBUI_PORT": str(ui), "WORKER_MEMORY": "1536m"})
    r = subprocess.run(["bash", str(CLUSTER), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield {"root": root, "env": env, "master": f"spark://127.0.0.1:{port}", "ui": ui}
    finally:
        pids = [int(p.read_text()) for p in (root / "cluster").glob("*.pid")]
        r = subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(1)
        assert not [p for p in pids if _alive(p)]  # stop stopped exactly what start started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return not Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _submit(c: dict, profile: str, log: Path) -> subprocess.Popen:
    cmd = ["bash", str(SPARK_SH), "submit", "--master", c["master"], "jobs/nightly.py", "--config", profile,
           "--ds", DS]
    return subprocess.Popen(cmd, cwd=ROOT, env=c["env"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _reference(spark, c: dict):
    cfg = load_config(_profile(c["root"], "ref"))
    if not (Path(cfg.paths.lake_root) / "ebf_examples").exists():
        nightly.run(spark, cfg, [DS])
    return cfg


def _master(c: dict) -> dict:
    """The master's state (its web UI's /json/): workers, active and completed applications."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{c['ui']}/json/", timeout=10) as r:
        return json.load(r)


def test_nightly_on_the_standalone_cluster_equals_the_local_run(spark, cluster):
    c = cluster
    assert sum(w["state"] == "ALIVE" for w in _master(c)["workers"]) == 2
    log = c["root"] / "submit.log"
    t0 = time.perf_counter()
    p = _submit(c, _profile(c["root"], "cl"), log)
    rc = p.wait(timeout=3600)
    wall = time.perf_counter() - t0
    out = log.read_text()
    assert rc == 0, out[-6000:]
    assert _master(c)["completedapps"], "the master saw no application"  # it ran on the cluster, not locally
    work = list((c["root"] / "cluster").glob("work-*/app-*/*/stderr"))
    assert len({w.parent.parent.parent.name for w in work}) == 2, work  # executors on both workers
    assert _content(spark, load_config(_profile(c["root"], "cl"))) == _content(spark, _reference(spark, c))
    (c["root"] / "timing_cluster.json").write_text(json.dumps({"wall_s": wall}))
    print(f"nightly on the cluster: {wall:.0f} s")


def test_a_worker_killed_mid_build_ebf_then_the_tables_reconcile(spark, cluster):
    c = cluster
    profile = _profile(c["root"], "kill")
    cfg = load_config(profile)
    lake = Path(cfg.paths.lake_root)
    log = c["root"] / "submit_kill.log"
    t0 = time.perf_counter()
    p = _submit(c, profile, log)
    # build_ebf starts after user_segments' first commit; give it a few seconds to have tasks on both workers
    deadline = time.time() + 1800
    while not (lake / "user_segments" / "_delta_log" / "00000000000000000000.json").exists():
        assert p.poll() is None, log.read_text()[-6000:]
        assert time.time() < deadline
        time.sleep(0.5)
    time.sleep(5)
    worker_pid = int((c["root"] / "cluster" / "worker-1.pid").read_text())
    children = subprocess.run(["pgrep", "-P", str(worker_pid)], capture_output=True, text=True).stdout.split()
    killed_at = time.perf_counter() - t0
    for pid in [worker_pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    rc = p.wait(timeout=3600)
    wall = time.perf_counter() - t0
    first = log.read_text()
    outcome = {"killed_at_s": killed_at, "first_run_rc": rc, "first_run_wall_s": wall,
               "killed_pids": [worker_pid, *map(int, children)]}
    # every table readable at its previous or new version, whatever happened
    for t in ("clean_ad_impressions", "user_window_stats", "user_segments", "run_metrics"):
        spark.read.format("delta").load(str(lake / t)).count()
    if rc != 0:  # the job failed: the message names the cause, and the re-run on the remaining worker completes
        assert "failed" in first.lower(), first[-6000:]
        t1 = time.perf_counter()
        p2 = _submit(c, profile, c["root"] / "submit_rerun.log")
        rc2 = p2.wait(timeout=3600)
        outcome.update(rerun_rc=rc2, rerun_wall_s=time.perf_counter() - t1)
        assert rc2 == 0, (c["root"] / "submit_rerun.log").read_text()[-6000:]
    (c["root"] / "timing_kill.json").write_text(json.dumps(outcome))
    print("worker kill outcome:", json.dumps(outcome))
    assert _content(spark, cfg) == _content(spark, _reference(spark, c))  # nothing lost, nothing duplicated


def test_history_server_lists_the_runs_event_logs(cluster):
    """The event logs the runs above wrote, opened with the history server the wheel ships
    (``scripts/spark.sh history start|stop``)."""
    import urllib.request

    c = cluster
    logs = list((c["root"] / "events").glob("eventlog_v2_*"))
    assert logs, "run after the tests above, which write the event logs"
    port = free_port()
    env = {**c["env"], "EVENT_LOG_DIR": str(c["root"] / "events"), "HISTORY_RUN_DIR": str(c["root"] / "history"),
           "HISTORY_PORT": str(port)}
    r = subprocess.run(["bash", str(SPARK_SH), "history", "start"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        deadline, apps = time.time() + 120, []
        while time.time() < deadline and len(apps) < len(logs):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/applications", timeout=5) as resp:
                    apps = json.load(resp)
            except OSError:
                pass
            time.sleep(1)
        assert len(apps) == len(logs) and all(a["name"] == "dynamix-nightly" and a["attempts"][0]["completed"] for a in apps)
    finally:
        subprocess.run(["bash", str(SPARK_SH), "history", "stop"], env=env, capture_output=True, timeout=120)
