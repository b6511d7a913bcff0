"""Airflow DAG ``dynamix_nightly``: wait_for_raw -> denoise -> user_window_stats -> build_ebf -> maintenance,
one run per day.

``wait_for_raw`` is a sensor (``PythonSensor``, reschedule mode: no worker slot held between pokes) on the day's
raw partitions: it succeeds once ``<raw_root>/<source>/ds=<ds>/_SUCCESS`` (the profile's ``paths.raw_root`` and
``paths.raw_ready_marker``) exists for every required source (``paths.required_sources``; ad impressions and
conversions by default) and for every optional source whose partition folder exists (a landing job still writing
it); an optional source without a folder is absent, and the day runs without it. It pokes every
``DYNAMIX_RAW_POKE_S`` seconds (300) and fails after ``DYNAMIX_RAW_WAIT_S`` (6 h) without them; then nothing
downstream runs (``DYNAMIX_RAW_SENSOR_MODE``:
``poke`` for ``airflow dags test`` in the end-to-end test). It reads the profile's ``paths`` with PyYAML
(following ``extends`` like the project's loader), not through the project, and validates none of them (the
jobs' config loader does: an unknown source in ``required_sources`` fails denoise with a config error). A raw
root on an object store is not checked here (it passes): denoise's own input check, which fails a day without
its required partitions or markers before any write, stays the gate.

Each other task is the documented spark-submit line (docs/OPERATIONS.md) run by a ``BashOperator``:

    cd <repo> && bash scripts/spark.sh submit <spark options> --py-files dist/dynamix_pyfiles.zip \\
        jobs/<job>.py --config <profile> --ds <ds>

``BashOperator`` rather than the apache-spark provider's ``SparkSubmitOperator``: the provider pulls in a
second PySpark and needs a Spark connection configured in Airflow, while ``scripts/spark.sh`` already adds the
pinned Delta jars and settings; the command Airflow runs is the one an engineer types by hand.

Schedule: a data interval per UTC day, from 02:00 to 02:00 (``CronDataIntervalTimetable``, the same meaning in
Airflow 2 and 3): the scheduled run for day D has the interval [D 02:00, D+1 02:00) and starts at 02:00 on D+1,
when the day's logs are in (denoise tolerates events up to 1 h off their partition). ``catchup=True``:
unpausing the DAG, or ``airflow backfill create`` / ``airflow dags backfill``, runs every missed day in order;
``max_active_runs=1`` and ``depends_on_past`` keep the days in order (a day's examples use the previous
day's segments; embedded Derby, the local catalog, admits one JVM at a time).

The day a run processes (``--ds`` of every task) is ``run_ds`` below, a pure function of the run:

- the ``ds`` param, when given: ``airflow dags trigger dynamix_nightly -c '{"ds": "2026-11-02"}'`` (or the
  ``ds`` field of the UI's trigger form) processes 2026-11-02, whatever the run's dates;
- a scheduled or backfill run: the start date of its data interval, the completed day D;
- any other run with a logical date (manual: ``airflow dags test dynamix_nightly 2026-11-02``,
  ``airflow dags trigger -l 2026-11-02``, the UI's logical date): the UTC date of that logical date, the day
  named. (Airflow infers a manual run's data interval as the last complete interval *before* the logical
  date, [10-31 02:00, 11-01 02:00) for 2026-11-02: ``data_interval_start | ds`` would process 2026-10-31.)
- a run with no logical date (``airflow dags trigger dynamix_nightly`` without ``-l`` or ``ds``): the last
  day complete when it was triggered (the day a scheduled run at that time would process).

So the one way to run a given day D is to name it: ``airflow dags test dynamix_nightly D`` (no scheduler) or
``airflow dags trigger dynamix_nightly -c '{"ds": "D"}'`` (through the scheduler), docs/OPERATIONS.md section 6.

Settings, as DAG params (override per run with ``airflow dags trigger -c '{"profile": ...}'``; for scheduled
runs change the defaults here or set the environment variables of the scheduler):
``ds`` (above; default none), ``repo`` (``DYNAMIX_HOME``, default: the checkout this file is in), ``profile``
(``DYNAMIX_PROFILE``, default ``conf/local.yaml``), ``spark_options`` (``DYNAMIX_SPARK_OPTIONS``, default
``--master local[2]``; on YARN e.g. ``--master yarn --deploy-mode client --num-executors 50``), ``py_files``.
The profile's driver and executor resources (``spark.driver.memory`` ...) reach spark-submit through
``scripts/spark.sh submit``, which also builds ``dist/dynamix_pyfiles.zip`` when it is missing or older than
the sources, so the DAG runs right after the README's set-up.

This file imports nothing of the project (no PySpark, no ``dynamix_spark``): the scheduler parses it often
and in its own environment (``.venv-airflow``). The steps and their order are the nightly job's
(``jobs/steps.py``, plain data that this file executes with ``runpy`` instead of importing).
"""
from __future__ import annotations

import datetime as dt
import os
import runpy
from pathlib import Path

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator
    from airflow.sensors.python import PythonSensor

DAG_ID = "dynamix_nightly"
REPO = os.environ.get("DYNAMIX_HOME", str(Path(__file__).resolve().parent.parent))

# The nightly steps, in order: (task id, job file), one spark-submit each. The list is jobs/steps.py's, the one
# the nightly job runs, read by executing that file (plain data, no imports) rather than importing the project.
# No separate quality task: each job gates its own output (write, audit with Great Expectations, then publish;
# docs/QUALITY.md), so a failed critical expectation fails that task with nothing published and the downstream
# tasks do not run. wait_for_raw holds the chain until the day's raw partitions have their _SUCCESS markers;
# denoise still checks them itself (a run started by hand without the sensor).
_STEPS_FILE = runpy.run_path(str(Path(REPO) / "jobs" / "steps.py"))
STEPS: list[tuple[str, str]] = [(step, _STEPS_FILE["job_file"](step)) for step in _STEPS_FILE["STEPS"]]

# The raw sources, one folder each under raw_root (schemas/raw.py's RAW_SOURCES; tests/test_airflow_dag.py
# checks the two agree, since this file cannot import the project).
RAW_SOURCES = ("ad_impressions", "conversions", "organic_impressions", "page_impressions")
# PathsConfig.required_sources' default (the same test checks that they agree): the sources a day waits for.
REQUIRED_SOURCES = ("ad_impressions", "conversions")
SENSOR_TASK_ID = "wait_for_raw"

# A day's logs are complete (denoise tolerates events up to 1 h off their partition) this long after its end:
# the scheduled run for day D starts at D+1 02:00 UTC.
READY_AFTER = dt.timedelta(hours=2)
# Run types whose data interval is one of the timetable's (the day D = its start date); every other run
# (manual, operator- or asset-triggered) takes the day from its logical date.
INTERVAL_RUN_TYPES = ("scheduled", "backfill")


def run_ds(run_type, logical_date, data_interval_start, run_after=None, param_ds=None) -> str:
    """The day (``YYYY-MM-DD``, UTC) a run processes; see the module docstring. Pure: no Airflow objects needed
    (``run_type`` may be a ``DagRunType`` or its string value, the dates any aware ``datetime`` or None).

    1. ``param_ds`` (the ``ds`` DAG param), when given;
    2. a scheduled or backfill run: the start date of its data interval (the completed day);
    3. another run with a logical date (``airflow dags test <date>``, ``airflow dags trigger -l <date>``, the
       UI): the UTC date of its logical date, the day named;
    4. a run with neither (``airflow dags trigger`` with no date): the last day complete at ``run_after``.
    """
    if param_ds:
        try:
            return dt.date.fromisoformat(str(param_ds)).isoformat()
        except ValueError:
            raise ValueError(f"param ds: not a YYYY-MM-DD date: {param_ds!r}") from None
    kind = str(getattr(run_type, "value", run_type))
    if kind in INTERVAL_RUN_TYPES and data_interval_start is not None:
        return _utc_date(data_interval_start).isoformat()
    if logical_date is not None:
        return _utc_date(logical_date).isoformat()
    if run_after is not None:
        return (_utc_date(run_after - READY_AFTER) - dt.timedelta(days=1)).isoformat()
    raise ValueError(f"a {kind} run without a data interval, a logical date or run_after: pass the ds param")


def _utc_date(t: dt.datetime) -> dt.date:
    return (t.astimezone(dt.timezone.utc) if t.tzinfo is not None else t).date()


def _ds_macro(params, dag_run) -> str:
    """``{{ dynamix_ds(params, dag_run) }}`` in the task commands: ``run_ds`` of the task's run."""
    return run_ds(dag_run.run_type, dag_run.logical_date, dag_run.data_interval_start,
                  getattr(dag_run, "run_after", None), params.get("ds"))


DS = "{{ dynamix_ds(params, dag_run) }}"


def _profile_paths(profile: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The ``paths`` section of a profile, following ``extends`` (relative to the profile's folder, later keys
    win) as ``dynamix_spark.config.load_config`` does, with PyYAML only."""
    import yaml

    if profile.resolve() in chain:
        raise ValueError(f"{profile}: extends loop")
    data = yaml.safe_load(profile.read_text()) or {}
    base = data.get("extends")
    paths = _profile_paths(profile.parent / base, (*chain, profile.resolve())) if base else {}
    return {**paths, **(data.get("paths") or {})}


def _raw_partitions(repo: str, profile: str, ds: str) -> tuple[dict, list[tuple[str, Path, Path]] | None]:
    """The profile's ``paths`` and, per source, (source, partition folder of ``ds``, the file whose existence
    marks it complete: the marker, or the folder when the profile's ``raw_ready_marker`` is ""). Relative paths
    are the repository's, as for the jobs; defaults as in ``PathsConfig``. None for a raw root on an object
    store (``s3a://...``): not checked here."""
    paths = _profile_paths(Path(repo) / profile)
    raw_root = str(paths.get("raw_root", "data/raw"))
    marker = str(paths.get("raw_ready_marker", "_SUCCESS") or "")
    if raw_root.startswith("file:"):
        raw_root = raw_root[len("file:"):]
    elif "://" in raw_root:
        return paths, None
    root = Path(repo) / raw_root
    folders = [(source, root / source / f"ds={ds}") for source in RAW_SOURCES]
    return paths, [(source, p, p / marker if marker else p) for source, p in folders]


def missing_raw_markers(repo: str, profile: str, ds: str) -> list[str]:
    """What the day ``ds`` still lacks, of every source: the ``<raw_root>/<source>/ds=<ds>/<marker>`` files (the
    partition folder when the profile's ``raw_ready_marker`` is ""). A raw root on an object store: []."""
    _, parts = _raw_partitions(repo, profile, ds)
    return [str(done) for _, _, done in parts or () if not done.exists()]


def awaited_raw_markers(repo: str, profile: str, ds: str) -> list[str]:
    """What the sensor still waits for: the missing markers of the required sources (``paths.required_sources``)
    and of optional sources whose partition folder exists (a landing job still writing it). An optional source
    without a folder for the day is absent: denoise runs the day without it (length-0 sequences)."""
    paths, parts = _raw_partitions(repo, profile, ds)
    required = tuple(paths.get("required_sources") or REQUIRED_SOURCES)
    return [str(done) for source, folder, done in parts or ()
            if not done.exists() and (source in required or folder.exists())]


def _raw_ready(repo: str, profile: str, ds: str) -> bool:
    missing = awaited_raw_markers(repo, profile, ds)
    if missing:
        print(f"raw input of {ds} not complete, waiting for: {', '.join(missing)}")
    return not missing


SUBMIT = ('cd "{{ params.repo }}" &&'
          " bash scripts/spark.sh submit {{ params.spark_options }}"
          " --py-files {{ params.py_files }} {job} --config {{ params.profile }} --ds " + DS)

default_args = {
    "owner": "dynamix",
    "retries": int(os.environ.get("DYNAMIX_RETRIES", "2")),  # 0 in the end-to-end test (a failure fails at once)
    "retry_delay": dt.timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "depends_on_past": True,
    "execution_timeout": dt.timedelta(hours=6),
}

with DAG(
    dag_id=DAG_ID,
    description="DynamiX nightly: denoise, windowed statistics and segments, EBF examples, Delta maintenance",
    schedule=CronDataIntervalTimetable(f"0 {READY_AFTER.seconds // 3600} * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    default_args=default_args,
    user_defined_macros={"dynamix_ds": _ds_macro},
    params={
        "ds": Param(None, type=["null", "string"], format="date",
                    description="The day to process (YYYY-MM-DD); empty: the run's own day (see the DAG's doc)."),
        "repo": REPO,
        "profile": os.environ.get("DYNAMIX_PROFILE", "conf/local.yaml"),
        "spark_options": os.environ.get("DYNAMIX_SPARK_OPTIONS", "--master 'local[2]'"),
        "py_files": "dist/dynamix_pyfiles.zip",  # built by scripts/spark.sh submit when missing or stale
    },
    tags=["dynamix", "spark", "delta"],
) as dag:
    wait_for_raw = PythonSensor(
        task_id=SENSOR_TASK_ID,
        python_callable=_raw_ready,
        op_kwargs={"repo": "{{ params.repo }}", "profile": "{{ params.profile }}", "ds": DS},
        mode=os.environ.get("DYNAMIX_RAW_SENSOR_MODE", "reschedule"),  # poke in the end-to-end test
        poke_interval=float(os.environ.get("DYNAMIX_RAW_POKE_S", "300")),
        timeout=float(os.environ.get("DYNAMIX_RAW_WAIT_S", str(6 * 3600))),  # then failed, no retry
    )
    tasks = [wait_for_raw] + [BashOperator(task_id=task_id, bash_command=SUBMIT.replace("{job}", job))
                              for task_id, job in STEPS]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
