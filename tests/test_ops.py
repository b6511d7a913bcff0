"""Operations: no master in code, the --py-files zip, maintenance (OPTIMIZE / VACUUM), catalog registration,
and one real spark-submit of the maintenance job whose catalog a second process then queries."""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from dynamix_spark.catalog import lake_tables, register_tables
from dynamix_spark.config import ConfigError, MaintenanceConfig, load_config
from dynamix_spark.maintenance import maintain_lake, vacuum_table
from training.delta_snapshot import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
D1, D2 = "2026-11-01", "2026-11-02"


pytestmark = pytest.mark.usefixtures("few_delta_tasks")


def _rows(n_users: int, days) -> list[tuple[int, int, str]]:
    """The rows :func:`_write` writes, computed in Python."""
    return sorted((i % n_users, i * 7, ds) for ds in days for i in range(n_users * 3))


def _write(spark, path: str, n_users: int, days=(D1, D2), files_per_day: int = 4) -> int:
    """One Delta commit with ``files_per_day`` files in each ds partition (round-robin over >= that many rows)."""
    df = spark.createDataFrame(_rows(n_users, days), "user_id long, value long, ds string")
    df.repartition(files_per_day).write.format("delta").partitionBy("ds").save(path)
    return n_users * 3 * len(days)


def _files_per_day(path: str, version: int | None = None) -> dict[str, int]:
    """Live files per ds at a version, from the Delta log itself (the training loader's JVM-free replay)."""
    snap = load_snapshot(path, version)
    return dict(collections.Counter(f.partition_values["ds"] for f in snap.files))


def test_no_master_set_in_code():
    """spark-submit owns the master: no job, library module or DAG sets it (session.py's test-only parameter aside)."""
    allowed = {("dynamix_spark/session.py", "builder = builder.master(master)")}
    hits = []
    for folder in ("jobs", "dynamix_spark", "dags"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line in path.read_text().splitlines():
                code = line.split("#", 1)[0].strip()
                if re.search(r"\.master\(|spark\.master|setMaster\(", code) and (rel, code) not in allowed:
                    hits.append(f"{rel}: {code}")
    assert hits == []
    # ... and the one allowed line is only reached with an explicit master= argument, which no job passes.
    jobs_text = "\n".join(p.read_text() for p in (ROOT / "jobs").glob("*.py"))
    assert "master=" not in jobs_text


def test_pyfiles_zip_holds_the_library_and_is_reproducible(tmp_path):
    out = []
    for sub in ("a", "b"):
        r = subprocess.run(["bash", str(ROOT / "scripts" / "build_pyfiles.sh"), str(tmp_path / sub)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out.append(Path(r.stdout.strip()))
    assert out[0].read_bytes() == out[1].read_bytes()  # same sources, same bytes
    names = sorted(zipfile.ZipFile(out[0]).namelist())
    expected = sorted(p.relative_to(ROOT).as_posix() for pkg in ("dynamix_spark", "schemas", "jobs")
                      for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)
    assert names == expected
    assert "jobs/maintenance.py" in names and "schemas/__init__.py" in names
    # Imports resolve from the zip (ahead of the editable install), from any working directory.
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                        "import dynamix_spark.maintenance as m, jobs.nightly as n; print(m.__file__); print(n.__file__)"],
                       env={**os.environ, "PYTHONPATH": str(out[0])}, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"{out[0]}/dynamix_spark/maintenance.py", f"{out[0]}/jobs/nightly.py"]


def test_maintenance_config_is_checked():
    cfg = load_config(ROOT / "conf" / "local.yaml")
    assert cfg.maintenance.vacuum_retention_hours == 168
    assert "ebf_examples" not in cfg.maintenance.zorder_tables
    with pytest.raises(ConfigError, match="maintenance.vacuum_retention_hours"):
        load_config(ROOT / "conf" / "local.yaml", ["maintenance.vacuum_retention_hours=24"])
    with pytest.raises(ConfigError, match="run_metrics has no column"):
        load_config(ROOT / "conf" / "local.yaml", ["maintenance.zorder_tables=[run_metrics]"])
    with pytest.raises(ConfigError, match="maintenance.zorder_by"):
        load_config(ROOT / "conf" / "local.yaml", ["maintenance.zorder_by=[ds]"])


def test_optimize_compacts_only_the_run_days_and_keeps_rows_and_time_travel(spark, tmp_path):
    lake = str(tmp_path / "lake")
    for name in ("by_user", "examples"):
        _write(spark, f"{lake}/{name}", 20)
        assert _files_per_day(f"{lake}/{name}") == {D1: 4, D2: 4}

    mcfg = MaintenanceConfig(zorder_tables=("by_user",), vacuum_retention_hours=168)
    done = {t.table: t for t in maintain_lake(spark, lake, [D2], mcfg)}

    assert sorted(done) == ["by_user", "examples"]
    for name in ("by_user", "examples"):
        t = done[name]
        assert t.optimize_predicate == f"ds IN ('{D2}')"
        assert (t.files_removed, t.files_added) == (4, 1)  # D2's 4 files -> 1, D1 untouched
        assert _files_per_day(f"{lake}/{name}") == {D1: 4, D2: 1}
        assert t.vacuum_files_deleted == 0  # the replaced files are minutes old: inside the retention
        # ... so version 0 (before OPTIMIZE) still has every one of its files: time travel works.
        v0 = load_snapshot(f"{lake}/{name}", 0)
        assert len(v0.files) == 8 and all(os.path.exists(f.path) for f in v0.files)
    assert done["by_user"].zorder_by == ("user_id",) and done["examples"].zorder_by == ()
    ops = {r["operation"]: r["operationParameters"] for r in
           spark.sql(f"DESCRIBE HISTORY delta.`{lake}/by_user`").collect()}
    assert ops["OPTIMIZE"]["zOrderBy"] == '["user_id"]'
    assert {"VACUUM START", "VACUUM END", "SET TBLPROPERTIES"} <= set(ops)
    # OPTIMIZE changed files, not rows: the latest version and version 0 both hold exactly the written rows.
    for version in (None, 0):
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        got = sorted(tuple(r) for r in reader.load(f"{lake}/by_user").select("user_id", "value", "ds").collect())
        assert got == _rows(20, (D1, D2))


def test_vacuum_uses_the_configured_retention(spark, tmp_path):
    """Unreferenced files go once older than the configured retention (240 h here, not Delta's default 168 h)."""
    path = str(tmp_path / "t")
    _write(spark, path, 5, days=(D1,), files_per_day=1)
    part = tmp_path / "t" / f"ds={D1}"
    live = next(part.glob("*.parquet"))
    orphans = {age_h: part / f"part-orphan-{age_h}h.parquet" for age_h in (300, 200)}
    for age_h, f in orphans.items():  # e.g. the files of a write that died before its commit
        f.write_bytes(live.read_bytes())
        os.utime(f, (time.time() - age_h * 3600,) * 2)
    assert vacuum_table(spark, path, 240) == 1
    assert not orphans[300].exists() and orphans[200].exists() and live.exists()
    assert load_snapshot(path).configuration["delta.deletedFileRetentionDuration"] == "interval 240 hours"


def test_register_tables_is_idempotent_and_follows_a_moved_table(spark, tmp_path):
    db = "ops_test_catalog"
    lake_a, lake_b = tmp_path / "a", tmp_path / "b"
    n_events = _write(spark, str(lake_a / "events"), 4, days=(D1,), files_per_day=1)
    _write(spark, str(lake_a / "blobs"), 2, days=(D1,), files_per_day=1)
    spark.range(3).write.parquet(str(lake_a / "plain_parquet"))  # not Delta: never registered
    (lake_a / "README").write_text("not a table")
    n_moved = _write(spark, str(lake_b / "events"), 5, days=(D1, D2), files_per_day=1)
    try:
        assert sorted(lake_tables(spark, str(lake_a))) == ["blobs", "events"]
        reg = register_tables(spark, str(lake_a), db)
        assert (reg.created, reg.relocated, reg.unchanged) == (("blobs", "events"), (), ())
        assert spark.sql(f"SELECT count(*) FROM {db}.events").first()[0] == n_events
        again = register_tables(spark, str(lake_a), db)
        assert (again.created, again.relocated, again.unchanged) == ((), (), ("blobs", "events"))
        moved = register_tables(spark, str(lake_b), db)
        assert (moved.created, moved.relocated, moved.stale) == ((), ("events",), ("blobs",))
        assert spark.sql(f"SELECT count(*) FROM {db}.events").first()[0] == n_moved
        assert (lake_a / "events" / "_delta_log").is_dir()  # re-pointing dropped an EXTERNAL entry only
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")


def test_spark_submit_maintenance_registers_a_catalog_that_outlives_the_session(spark, tmp_path):
    """A real ``spark.sh submit --py-files`` run of the maintenance job with a Hive/Derby catalog, then a second
    process (``jobs/sql.py``) that finds the tables by name without registering anything itself."""
    lake = tmp_path / "lake"
    n_rows = _write(spark, str(lake / "user_segments"), 6)
    conf = tmp_path / "ops.yaml"
    conf.write_text(f"""
paths: {{raw_root: {tmp_path}/raw, lake_root: {lake}, truth_root: {tmp_path}/truth, database: dynamix}}
spark:
  conf:
    spark.sql.catalogImplementation: hive
    spark.sql.warehouse.dir: {tmp_path}/warehouse
    spark.hadoop.javax.jdo.option.ConnectionURL: "jdbc:derby:;databaseName={tmp_path}/metastore_db;create=true"
    spark.sql.shuffle.partitions: "2"
    spark.ui.enabled: "false"
    spark.databricks.delta.snapshotPartitions: "2"
    spark.sql.sources.parallelPartitionDiscovery.parallelism: "2"
""")
    zip_path = subprocess.run(["bash", str(ROOT / "scripts" / "build_pyfiles.sh"), str(tmp_path / "dist")],
                              capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "spark.sh"), "submit", "--master", "local[1]",
                        "--driver-memory", "1g", "--py-files", zip_path, str(ROOT / "jobs" / "maintenance.py"),
                        "--config", str(conf), "--ds", D2], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    report = json.loads(r.stdout[r.stdout.index("{\n"):])  # Delta's VACUUM prints a line of its own first
    assert report["catalog"]["catalog"] == "hive"
    assert report["catalog"]["created"] == ["run_metrics", "user_segments"]
    assert report["tables"]["user_segments"]["zorder_by"] == ["user_id"]
    assert _files_per_day(str(lake / "user_segments")) == {D1: 4, D2: 1}

    q = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "jobs" / "sql.py"), "--config", str(conf),
                        "--format", "tsv",
                        "SELECT ds, count(*) AS n FROM dynamix.user_segments GROUP BY ds ORDER BY ds",
                        "SELECT source, status FROM dynamix.run_metrics WHERE job = 'maintenance'"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stdout[-3000:] + q.stderr[-5000:]
    assert "registered" not in q.stderr  # the Hive catalog was persistent: nothing re-registered
    assert q.stdout.split("\n")[:6] == ["ds\tn", f"{D1}\t{n_rows // 2}", f"{D2}\t{n_rows // 2}",
                                        "source\tstatus", "user_segments\tsucceeded", ""]


@pytest.mark.parametrize("statement, plan", [
    ("SELECT segment, count(*) FROM dynamix.user_window_stats GROUP BY segment", None),
    ("WITH a AS (SELECT 1 AS x) SELECT * FROM a", None),
    ("SELECT * FROM dynamix.user_segments VERSION AS OF 3", None),
    ("DESCRIBE HISTORY dynamix.ebf_examples", None),
    ("DESCRIBE DETAIL dynamix.ebf_examples", None),
    ("SHOW TABLES IN dynamix", None),
    ("EXPLAIN SELECT 1", None),
    ("INSERT INTO dynamix.user_segments SELECT * FROM dynamix.user_segments", "InsertIntoStatement"),
    ("INSERT OVERWRITE dynamix.user_segments SELECT * FROM dynamix.user_segments", "InsertIntoStatement"),
    ("DELETE FROM dynamix.user_segments WHERE ds = '2026-11-01'", "DeleteFromTable"),
    ("UPDATE dynamix.user_segments SET segment = 1", "UpdateTable"),
    ("MERGE INTO dynamix.a t USING dynamix.b s ON t.user_id = s.user_id WHEN MATCHED THEN DELETE", "MergeIntoTable"),
    ("DROP TABLE dynamix.user_segments", "DropTable"),
    ("CREATE TABLE dynamix.x AS SELECT 1", "CreateTableAsSelect"),
    ("TRUNCATE TABLE dynamix.user_segments", "TruncateTable"),
    ("OPTIMIZE dynamix.user_segments", "OptimizeTableCommand"),
    ("VACUUM dynamix.user_segments", "VacuumTableCommand"),
    ("RESTORE TABLE dynamix.user_segments TO VERSION AS OF 1", "RestoreTableStatement"),
    ("ALTER TABLE dynamix.user_segments ADD COLUMNS (b int)", "AddColumns"),
])
def test_sql_is_read_only_unless_asked(spark, statement, plan):
    """Which statements ``dynamix sql`` refuses without --allow-writes (decided from the parsed plan; the
    tables need not exist)."""
    from dynamix_spark.sql_cli import writes

    assert writes(spark, statement) == plan


def test_sql_cli_refuses_a_write_before_running_anything(spark, tmp_path):
    from dynamix_spark.sql_cli import main

    path = tmp_path / "t"
    _write(spark, str(path), 2, days=(D1,), files_per_day=1)
    rc = main(["sql", "--config", str(ROOT / "conf" / "local.yaml"), "--set", "spark.conf={}",
               "--set", f"paths.lake_root={tmp_path}", "--set", "paths.database=ro_test",
               f"SELECT count(*) FROM delta.`{path}`", f"DELETE FROM delta.`{path}` WHERE user_id = 0"])
    try:
        assert rc == 3
        assert load_snapshot(str(path)).version == 0  # nothing ran: not even the SELECT before it
        assert spark.read.format("delta").load(str(path)).count() == 6
        rc = main(["sql", "--config", str(ROOT / "conf" / "local.yaml"), "--set", "spark.conf={}",
                   "--set", f"paths.lake_root={tmp_path}", "--set", "paths.database=ro_test", "--allow-writes",
                   f"DELETE FROM delta.`{path}` WHERE user_id = 0"])
        assert rc == 0
        assert spark.read.format("delta").load(str(path)).count() == 3  # rows of user 0: 3 of 6
    finally:
        spark.sql("DROP DATABASE IF EXISTS ro_test CASCADE")
