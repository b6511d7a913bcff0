"""``scripts/spark.sh submit``: the job profile's launch-time settings reach spark-submit, and the --py-files
zip is built when missing or stale (dynamix_spark/submit.py)."""
from __future__ import annotations

import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from dynamix_spark import submit

ROOT = Path(__file__).resolve().parent.parent
DELTA = ["--jars", "/c/delta.jar", "--driver-class-path", "/c/delta.jar", "--conf", "spark.sql.session.timeZone=UTC"]


def _profile(tmp_path: Path, conf: dict[str, str]) -> Path:
    lines = "\n".join(f'    {k}: "{v}"' for k, v in conf.items())
    p = tmp_path / "p.yaml"
    p.write_text(f"spark:\n  conf:\n{lines}\n" if conf else "spark:\n  conf: {}\n")
    return p


def _prefix(argv, cwd=None):
    old = os.getcwd()
    os.chdir(cwd or old)
    try:
        return submit.submit_prefix(argv, delta_args=DELTA)
    finally:
        os.chdir(old)


def test_profile_driver_memory_becomes_driver_memory_flag(tmp_path):
    p = _profile(tmp_path, {"spark.driver.memory": "6g", "spark.driver.extraJavaOptions": "-XX:+UseG1GC",
                            "spark.executor.memory": "3g", "spark.sql.shuffle.partitions": "8"})
    out = _prefix(["--master", "local[2]", "jobs/denoise.py", "--config", str(p), "--ds", "2026-11-02"])
    assert out[:len(DELTA)] == DELTA
    extra = out[len(DELTA):]
    assert extra == ["--driver-memory", "6g", "--conf", "spark.driver.extraJavaOptions=-XX:+UseG1GC",
                     "--conf", "spark.executor.memory=3g"]  # session settings stay with the builder


def test_the_local_profile_reaches_the_dag_and_readme_lines():
    # conf/local.yaml's 6g: what jobs/nightly.py gets when its builder starts the JVM.
    out = _prefix(["--master", "local[2]", "--py-files", "nope/other.zip", "jobs/build_ebf.py",
                   "--config", "conf/local.yaml", "--ds", "2026-11-02"], cwd=ROOT)
    assert out[out.index("--driver-memory") + 1] == "6g"
    # No --config: the jobs' default profile, conf/local.yaml.
    out = _prefix(["jobs/denoise.py", "--ds", "2026-11-02"], cwd=ROOT)
    assert out[out.index("--driver-memory") + 1] == "6g"


@pytest.mark.parametrize("given", [["--driver-memory", "2g"], ["--conf", "spark.driver.memory=2g"],
                                   ["--driver-memory=2g"]])
def test_the_callers_setting_wins(tmp_path, given):
    p = _profile(tmp_path, {"spark.driver.memory": "6g", "spark.executor.memory": "3g"})
    out = _prefix([*given, "--master", "local[1]", "job.py", "--config", str(p)])
    assert "6g" not in " ".join(out) and "--driver-memory" not in out
    assert out[-2:] == ["--conf", "spark.executor.memory=3g"]


def test_overrides_and_errors(tmp_path):
    p = _profile(tmp_path, {"spark.driver.memory": "6g"})
    # --set spark.conf={} (as tests/test_nightly.py does) leaves no profile setting to pass.
    assert _prefix(["job.py", "--config", str(p), "--set", "spark.conf={}"]) == DELTA
    assert _prefix(["job.py", f"--config={p}"])[-2:] == ["--driver-memory", "6g"]
    # No job at all (spark-submit --version): nothing added.
    assert _prefix(["--version"]) == DELTA
    # A profile that does not load: exit 2 with the job's own message, before any JVM.
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "dynamix_spark.submit", "job.py",
                        "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "config error:" in r.stderr and r.stdout == ""


def test_profile_class_path_joins_the_delta_jars(tmp_path):
    p = _profile(tmp_path, {"spark.driver.extraClassPath": "/x/extra.jar"})
    out = _prefix(["job.py", "--config", str(p)])
    assert out[out.index("--driver-class-path") + 1] == "/c/delta.jar:/x/extra.jar"
    assert "spark.driver.extraClassPath=/x/extra.jar" not in " ".join(out)


def test_split_submit_args():
    opts, rest = submit.split_submit_args(["--master", "local[2]", "--verbose", "--conf=a.b=c", "--py-files",
                                           "file:///d/dynamix_pyfiles.zip,local:///e/dynamix_pyfiles.zip,x.zip",
                                           "jobs/x.py", "--config", "c.yaml"])
    assert opts == [("--master", "local[2]"), ("--verbose", None), ("--conf", "a.b=c"),
                    ("--py-files", "file:///d/dynamix_pyfiles.zip,local:///e/dynamix_pyfiles.zip,x.zip")]
    assert rest == ["jobs/x.py", "--config", "c.yaml"]
    assert submit.pyfiles_zips(opts) == [Path("/d/dynamix_pyfiles.zip")]


def test_pyfiles_zip_is_built_when_missing_or_stale(tmp_path):
    z = tmp_path / "dist" / "dynamix_pyfiles.zip"
    argv = ["--py-files", str(z), "job.py", "--config", str(_profile(tmp_path, {}))]
    _prefix(argv)
    assert z.is_file()
    names = zipfile.ZipFile(z).namelist()
    assert "jobs/build_ebf.py" in names and "dynamix_spark/submit.py" in names
    assert not submit.pyfiles_stale(z)
    built = z.stat().st_mtime
    _prefix(argv)
    assert z.stat().st_mtime == built  # up to date: not rebuilt
    # A source newer than the zip makes it stale.
    old = 1_000_000.0  # 1970: older than every source whenever the suite runs (a fresh clone's files are new)
    os.utime(z, (old, old))
    assert submit.pyfiles_stale(z)
    _prefix(argv)
    assert z.stat().st_mtime > old
    # So does a zip whose file list is not the sources' (a file added or removed since).
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("dynamix_spark/gone.py", "")
    assert submit.pyfiles_stale(z)


def test_a_submitted_job_gets_the_profiles_driver_memory(tmp_path):
    """Through spark-submit for real: the driver JVM's heap and SparkConf are the profile's, not the 1g default."""
    p = _profile(tmp_path, {"spark.driver.memory": "1536m", "spark.ui.enabled": "false"})
    job = tmp_path / "show_conf.py"
    job.write_text(
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "jvm = spark.sparkContext._jvm\n"
        "print('DRIVER_MEMORY=' + spark.sparkContext.getConf().get('spark.driver.memory'))\n"
        "print('MAX_HEAP_MB=%d' % (jvm.java.lang.Runtime.getRuntime().maxMemory() // 2**20))\n"
        "spark.stop()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "spark.sh"), "submit", "--master", "local[1]", str(job),
                        "--config", str(p)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "DRIVER_MEMORY=1536m" in r.stdout
    heap = int(r.stdout.split("MAX_HEAP_MB=")[1].split()[0])
    assert 1200 < heap <= 1536  # Spark's default 1g driver would be under 1024


def test_event_log_folder_is_created_for_local_paths_only(tmp_path, monkeypatch):
    """Spark refuses to start with event logs on and a missing folder: the session builder creates a local
    one (a path, or a file: URI) and leaves remote ones (s3a:, hdfs:) alone."""
    from dynamix_spark.session import ensure_event_log_dir

    monkeypatch.chdir(tmp_path)
    ensure_event_log_dir({"spark.eventLog.enabled": "true", "spark.eventLog.dir": "data/spark-events"})
    assert (tmp_path / "data" / "spark-events").is_dir()
    ensure_event_log_dir({"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file:{tmp_path}/ev2"})
    assert (tmp_path / "ev2").is_dir()
    ensure_event_log_dir({"spark.eventLog.enabled": "true", "spark.eventLog.dir": "s3a://bucket/ev"})
    ensure_event_log_dir({"spark.eventLog.enabled": "false", "spark.eventLog.dir": "off"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ev2"]
