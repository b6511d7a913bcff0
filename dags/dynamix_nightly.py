"""Airflow DAG ``dynamix_nightly``: denoise -> user_window_stats -> build_ebf -> maintenance, one run per day.

Each task is the documented spark-submit line (docs/OPERATIONS.md) run by a ``BashOperator``:

    cd <repo> && bash scripts/spark.sh submit <spark options> --py-files dist/dynamix_pyfiles.zip \\
        jobs/<job>.py --config <profile> --ds <ds>

``BashOperator`` rather than the apache-spark provider's ``SparkSubmitOperator``: the provider pulls in a
second PySpark and needs a Spark connection configured in Airflow, while ``scripts/spark.sh`` already adds the
pinned Delta jars and settings; the command Airflow runs is the one an engineer types by hand.

Schedule: a data interval per UTC day, from 02:00 to 02:00 (``CronDataIntervalTimetable``, the same meaning in
Airflow 2 and 3): the run for ``ds`` = the interval's start date starts at 02:00 the next day, when the day's
logs are in (denoise tolerates events up to 1 h off their partition). ``catchup=True``: unpausing the DAG,
or ``airflow backfill create`` / ``airflow dags backfill``, runs every missed day in order;
``max_active_runs=1`` and ``depends_on_past`` keep the days in order (a day's examples use the previous
day's segments; embedded Derby, the local catalog, admits one JVM at a time).

Settings, as DAG params (override per run with ``airflow dags trigger -c '{"profile": ...}'``; for scheduled
runs change the defaults here or set the environment variables of the scheduler):
``repo`` (``DYNAMIX_HOME``, default: the checkout this file is in), ``profile`` (``DYNAMIX_PROFILE``,
default ``conf/local.yaml``), ``spark_options`` (``DYNAMIX_SPARK_OPTIONS``, default ``--master local[2]``;
on YARN e.g. ``--master yarn --deploy-mode client --num-executors 50``), ``py_files``.

This file imports nothing of the project (no PySpark, no ``dynamix_spark``): the scheduler parses it often
and in its own environment (``.venv-airflow``).
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

DAG_ID = "dynamix_nightly"
REPO = os.environ.get("DYNAMIX_HOME", str(Path(__file__).resolve().parent.parent))

# The nightly steps, in order: (task id, job file). One spark-submit each.
STEPS: list[tuple[str, str]] = [
    ("denoise", "jobs/denoise.py"),
    ("user_window_stats", "jobs/user_window_stats.py"),
    # No separate quality task: each job gates its own output (write, audit with Great Expectations, then
    # publish; docs/QUALITY.md), so a failed critical expectation fails that task with nothing published
    # and the downstream tasks do not run. A day whose raw input is missing or lacks its _SUCCESS marker
    # fails denoise before any write; the retries (10 min, backoff) then wait for a late landing.
    ("build_ebf", "jobs/build_ebf.py"),
    ("maintenance", "jobs/maintenance.py"),  # OPTIMIZE / VACUUM / catalog registration: always last
]

# The day a run processes: its data interval's start date (not logical_date, which Airflow 3's default
# timetable sets to the run time).
DS = "{{ data_interval_start | ds }}"

SUBMIT = ('cd "{{ params.repo }}" &&'
          " bash scripts/spark.sh submit {{ params.spark_options }}"
          " --py-files {{ params.py_files }} {job} --config {{ params.profile }} --ds " + DS)

default_args = {
    "owner": "dynamix",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "depends_on_past": True,
    "execution_timeout": dt.timedelta(hours=6),
}

with DAG(
    dag_id=DAG_ID,
    description="DynamiX nightly: denoise, windowed statistics and segments, EBF examples, Delta maintenance",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    default_args=default_args,
    params={
        "repo": REPO,
        "profile": os.environ.get("DYNAMIX_PROFILE", "conf/local.yaml"),
        "spark_options": os.environ.get("DYNAMIX_SPARK_OPTIONS", "--master 'local[2]'"),
        "py_files": "dist/dynamix_pyfiles.zip",  # bash scripts/build_pyfiles.sh, at deploy time
    },
    tags=["dynamix", "spark", "delta"],
) as dag:
    tasks = [BashOperator(task_id=task_id, bash_command=SUBMIT.replace("{job}", job)) for task_id, job in STEPS]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
