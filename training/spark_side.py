"""Calling the Spark side from the training side: its documented job commands, in its own environment.

The two sides of the deployment have their own Python environments (README, "Set-up"): the Spark side's
(``.venv``: PySpark, delta-spark, GX, pyarrow >= 18) and this one's (``.venv-train``: torch, Petastorm,
pyarrow 14, no PySpark). Nothing here imports PySpark or ``jobs/``: a job is a subprocess,
``<spark python> jobs/<job>.py --config ... [--ds ...]``, exactly as in scripts/demo.sh.

The Spark side's interpreter: ``$DYNAMIX_SPARK_PYTHON`` if set, else ``<repo>/.venv/bin/python``.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import yaml

from dynamix_spark.config import Config, config_to_dict

ROOT = Path(__file__).resolve().parent.parent


class SparkJobError(RuntimeError):
    """A Spark-side job exited with a non-zero status."""


def spark_python() -> str:
    return os.environ.get("DYNAMIX_SPARK_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


def spark_env() -> dict[str, str]:
    """The environment for a Spark-side process: its Python for the driver and the executors."""
    py = spark_python()
    return {**os.environ, "PYSPARK_PYTHON": py, "PYSPARK_DRIVER_PYTHON": py}


def write_config(cfg: Config, folder: str | Path) -> Path:
    """``cfg`` as a YAML profile (``config_to_dict``), so that a job loads exactly this configuration."""
    path = Path(folder) / "config.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def run_job(job: str, cfg: Config, args: Sequence[str] = (), log=None) -> None:
    """``<spark python> jobs/<job>.py --config <cfg as YAML> [args]``; its output goes to this process's
    stderr (a job's stdout is shared with the JVM's). Raises SparkJobError on a non-zero exit."""
    with tempfile.TemporaryDirectory(prefix=f"dynamix-{job}-") as d:
        cmd = [spark_python(), str(ROOT / "jobs" / f"{job}.py"), "--config", str(write_config(cfg, d)), *args]
        if log:
            log("$ " + " ".join(cmd[:2]) + " --config <this configuration> " + " ".join(args))
        res = subprocess.run(cmd, env=spark_env(), stdout=subprocess.DEVNULL if job == "nightly" else None)
    if res.returncode != 0:
        raise SparkJobError(f"jobs/{job}.py exited with status {res.returncode}")
