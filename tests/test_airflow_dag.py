"""The Airflow DAG parses in Airflow's own environment and has the promised shape.

Airflow lives in ``.venv-airflow`` (scripts/bootstrap.sh; its pins conflict with ours), so the check runs
there in a subprocess: load ``dags/`` with ``DagBag`` and report the DAG as JSON; the assertions are here.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PY = ROOT / ".venv-airflow" / "bin" / "python"
ORDER = ["wait_for_raw", "denoise", "user_window_stats", "build_ebf", "maintenance"]
SUBMIT_TASKS = ORDER[1:]

PROBE = r"""
import json, sys, types
import pendulum
try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.1
except ImportError:
    from airflow.models.dagbag import DagBag
from airflow.timetables.base import TimeRestriction
from airflow.utils.types import DagRunType

dag_folder = sys.argv[1]
try:
    bag = DagBag(dag_folder, include_examples=False)
except TypeError:  # Airflow 3.3 dropped include_examples (examples are off by AIRFLOW__CORE__LOAD_EXAMPLES)
    bag = DagBag(dag_folder)
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids)}
dag = bag.dags.get("dynamix_nightly")
if dag is not None:
    UTC = pendulum.UTC
    now = pendulum.now(UTC)
    env = dag.get_template_env()
    defaults = {k: dag.params[k] for k in dag.params}
    timetable = dag.timetable
    try:  # what the scheduler and `airflow dags test` use (Airflow 3)
        from airflow.serialization.encoders import coerce_to_core_timetable
        timetable = coerce_to_core_timetable(dag.timetable)
    except ImportError:
        pass

    def run(run_type, logical_date, data_interval, run_after, **params):
        return types.SimpleNamespace(run_type=run_type, logical_date=logical_date, run_after=run_after,
                                     data_interval_start=data_interval.start if data_interval else None,
                                     data_interval_end=data_interval.end if data_interval else None), params

    cases = {}
    # Scheduled: the first three runs after start_date, as the scheduler creates them with catchup.
    last = None
    for i in range(3):
        info = timetable.next_dagrun_info(last_automated_data_interval=last,
                                          restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True))
        cases[f"scheduled_{i}"] = run(DagRunType.SCHEDULED, info.logical_date, info.data_interval, info.run_after)
        last = info.data_interval
    first = cases["scheduled_0"][0]
    # Backfill: `airflow backfill create --from-date 2026-11-01 --to-date 2026-11-03T02:00:00+00:00` creates one run
    # per DagRunInfo between the two (airflow.models.backfill._get_info_list).
    try:
        from airflow.serialization.serialized_objects import DagSerialization
        sdag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    except ImportError:
        sdag = dag
    backfill = list(sdag.iter_dagrun_infos_between(pendulum.datetime(2026, 11, 1, tz=UTC),
                                                   pendulum.datetime(2026, 11, 3, 2, tz=UTC)))
    for i, info in enumerate(backfill):
        cases[f"backfill_{i}"] = run(DagRunType.BACKFILL_JOB, info.logical_date, info.data_interval, info.run_after)
    # Manual, as each entry point creates it (Airflow 3.3):
    named = pendulum.datetime(2026, 11, 2, tz=UTC)
    # `airflow dags test dynamix_nightly 2026-11-02`: interval inferred from the logical date (Dag.test).
    cases["dags_test"] = run(DagRunType.MANUAL, named, timetable.infer_manual_data_interval(run_after=named), now)
    # `airflow dags trigger -l 2026-11-02`: interval inferred from run_after = now (api/common/trigger_dag.py).
    cases["cli_trigger_logical_date"] = run(DagRunType.MANUAL, named,
                                            timetable.infer_manual_data_interval(run_after=now), now)
    # The UI / REST API with a logical date in the afternoon of the day.
    afternoon = pendulum.datetime(2026, 11, 2, 15, 30, tz=UTC)
    cases["ui_trigger"] = run(DagRunType.MANUAL, afternoon,
                              timetable.infer_manual_data_interval(run_after=afternoon), now)
    # `airflow dags trigger dynamix_nightly` with no date: no logical date, no data interval.
    cases["trigger_no_date_morning"] = run(DagRunType.MANUAL, None, None, pendulum.datetime(2026, 11, 3, 10, tz=UTC))
    cases["trigger_no_date_before_2am"] = run(DagRunType.MANUAL, None, None, pendulum.datetime(2026, 11, 3, 1, tz=UTC))
    # The ds param wins over every date of the run.
    cases["trigger_param_ds"] = run(DagRunType.MANUAL, None, None, now, ds="2026-10-15")
    cases["dags_test_param_ds"] = run(DagRunType.MANUAL, named, timetable.infer_manual_data_interval(run_after=named),
                                      now, ds="2026-11-03")
    cases["scheduled_param_ds"] = (first, {"ds": "2026-11-05"})

    def render(t, dag_run, params):
        if hasattr(t, "bash_command"):
            return env.from_string(t.bash_command).render(params={**defaults, **params}, dag_run=dag_run)
        # the sensor: its templated arguments, in the same "... --ds <ds>" shape as the commands
        kw = {k: env.from_string(v).render(params={**defaults, **params}, dag_run=dag_run) for k, v in t.op_kwargs.items()}
        return json.dumps({k: kw[k] for k in ("repo", "profile")}) + " --ds " + kw["ds"]

    # The sensor's check on a raw folder: a profile extending another, a marker of its own, one source late.
    import os, tempfile
    missing_raw_markers = dag.get_task("wait_for_raw").python_callable.__globals__["missing_raw_markers"]
    tmp = tempfile.mkdtemp()
    os.makedirs(f"{tmp}/conf")
    open(f"{tmp}/conf/base.yaml", "w").write("paths:\n  raw_root: lake/raw\n  lake_root: lake/tables\n")
    open(f"{tmp}/conf/child.yaml", "w").write("extends: base.yaml\npaths:\n  raw_ready_marker: _DONE\n")
    open(f"{tmp}/conf/s3.yaml", "w").write("paths:\n  raw_root: s3a://bucket/raw\n")
    sources = dag.get_task("wait_for_raw").python_callable.__globals__["RAW_SOURCES"]
    for src in sources:
        os.makedirs(f"{tmp}/lake/raw/{src}/ds=2026-11-02")
        if src != "conversions":
            open(f"{tmp}/lake/raw/{src}/ds=2026-11-02/_DONE", "w").close()
    sensor_checks = {"sources": list(sources), "tmp": tmp,
                     "one_late": missing_raw_markers(tmp, "conf/child.yaml", "2026-11-02"),
                     "base_marker": len(missing_raw_markers(tmp, "conf/base.yaml", "2026-11-02")),
                     "other_day": len(missing_raw_markers(tmp, "conf/child.yaml", "2026-11-03")),
                     "object_store": missing_raw_markers(tmp, "conf/s3.yaml", "2026-11-02")}
    open(f"{tmp}/lake/raw/conversions/ds=2026-11-02/_DONE", "w").close()
    sensor_checks["all_in"] = missing_raw_markers(tmp, "conf/child.yaml", "2026-11-02")
    sensor_checks["poke_all_in"] = dag.get_task("wait_for_raw").python_callable(tmp, "conf/child.yaml", "2026-11-02")

    macro = dag.user_defined_macros["dynamix_ds"]
    run_ds = macro.__globals__["run_ds"]
    try:
        run_ds("manual", None, None, None, "2026-13-01")
        bad_param = None
    except ValueError as e:
        bad_param = str(e)
    try:
        dag.params.validate()
        params_ok = True
    except Exception as e:
        params_ok = str(e)
    out["dag"] = {
        "schedule": dag.timetable.serialize(), "timetable": type(dag.timetable).__name__,
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs, "params": defaults,
        "params_ok": params_ok, "bad_param": bad_param, "sensor_checks": sensor_checks,
        "first_interval": [first.data_interval_start.isoformat(), first.data_interval_end.isoformat(),
                           first.run_after.isoformat()],
        "cases": {name: {"logical_date": r.logical_date and r.logical_date.isoformat(),
                         "interval_start": r.data_interval_start and r.data_interval_start.isoformat(),
                         "ds": macro({**defaults, **p}, r),
                         "commands": sorted({render(t, r, p).split("--ds ")[1] for t in dag.tasks})}
                  for name, (r, p) in cases.items()},
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "downstream": sorted(t.downstream_task_ids),
                              "retries": t.retries, "depends_on_past": t.depends_on_past,
                              "operator": type(t).__name__,
                              "mode": getattr(t, "mode", None), "poke_interval": getattr(t, "poke_interval", None),
                              "timeout": getattr(t, "timeout", None),
                              "command": render(t, cases["scheduled_1"][0], {})}
                  for t in dag.tasks},
    }
out["project_modules"] = sorted(m for m in sys.modules
                                if m.split(".")[0] in ("pyspark", "py4j", "delta", "dynamix_spark", "jobs", "schemas"))
print("PROBE_JSON=" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if not AIRFLOW_PY.exists():
        if os.environ.get("DYNAMIX_SKIP_AIRFLOW") == "1":
            pytest.skip("DYNAMIX_SKIP_AIRFLOW=1: .venv-airflow not installed")
        pytest.fail(f"{AIRFLOW_PY} missing: run `bash scripts/bootstrap.sh` (it installs Airflow into .venv-airflow)")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAMIX_", "AIRFLOW", "PYTHON", "PYSPARK"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags")})
    r = subprocess.run([str(AIRFLOW_PY), "-c", PROBE, str(ROOT / "dags")], env=env, cwd=home,
                       capture_output=True, text=True, timeout=300)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("PROBE_JSON=")]
    assert r.returncode == 0 and line, f"DagBag probe failed (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(line[-1].removeprefix("PROBE_JSON="))


def test_dag_parses_without_project_code(probe):
    assert probe["import_errors"] == {}
    assert probe["dag_ids"] == ["dynamix_nightly"]
    # Parsing must not import PySpark or the library: the scheduler parses the file often, in its own venv.
    assert probe["project_modules"] == []


def test_tasks_form_one_chain_in_pipeline_order(probe):
    tasks = probe["dag"]["tasks"]
    assert set(ORDER) <= set(tasks)
    # One linear chain: one root, every task at most one upstream and one downstream.
    roots = [t for t, v in tasks.items() if not v["upstream"]]
    assert roots == ["wait_for_raw"]
    chain = ["wait_for_raw"]
    while tasks[chain[-1]]["downstream"]:
        (nxt,) = tasks[chain[-1]]["downstream"]
        assert tasks[nxt]["upstream"] == [chain[-1]]
        chain.append(nxt)
    assert len(chain) == len(tasks)
    # The raw sensor, then exactly the pipeline's steps (each job gates its own output with its quality suite:
    # no separate task).
    assert chain == ORDER


def test_schedule_catchup_retries(probe):
    dag = probe["dag"]
    assert dag["timetable"] == "CronDataIntervalTimetable"
    assert dag["schedule"] == {"expression": "0 2 * * *", "timezone": "UTC"}
    assert dag["catchup"] is True
    assert dag["max_active_runs"] == 1
    # The first run processes 2026-11-01 (start_date) and starts at 02:00 the next day, when the day is in.
    assert dag["first_interval"] == ["2026-11-01T02:00:00+00:00", "2026-11-02T02:00:00+00:00",
                                     "2026-11-02T02:00:00+00:00"]
    for task_id, t in dag["tasks"].items():
        assert t["retries"] == 2
        assert t["depends_on_past"] is True
        assert t["operator"] == ("PythonSensor" if task_id == "wait_for_raw" else "BashOperator")


def test_the_raw_sensor_waits_for_every_sources_marker(probe):
    """wait_for_raw: reschedule mode (no worker slot between pokes), every 5 min, gives up after 6 h; it looks
    for the markers where the profile (followed through ``extends``) says, for the run's day and repository."""
    from schemas.raw import RAW_SOURCES

    t = probe["dag"]["tasks"]["wait_for_raw"]
    assert (t["mode"], t["poke_interval"], t["timeout"]) == ("reschedule", 300, 6 * 3600)
    assert json.loads(t["command"].split(" --ds ")[0]) == {"repo": str(ROOT), "profile": "conf/local.yaml"}
    c = probe["dag"]["sensor_checks"]
    assert c["sources"] == list(RAW_SOURCES)  # the DAG's copy of the list is the contract's
    tmp = c["tmp"]
    assert c["one_late"] == [f"{tmp}/lake/raw/conversions/ds=2026-11-02/_DONE"]
    assert c["base_marker"] == len(RAW_SOURCES)  # base.yaml: the default _SUCCESS, which nobody wrote
    assert c["other_day"] == len(RAW_SOURCES)
    assert c["object_store"] == []  # not checked here: denoise's own input check decides
    assert c["all_in"] == [] and c["poke_all_in"] is True


def test_the_day_processed_is_the_day_named(probe):
    """``run_ds`` for every way a run is made (the module docstring): scheduled and backfill runs process their
    interval's day, a manual run the date it names, the ``ds`` param overrides everything."""
    cases = probe["dag"]["cases"]
    ds = {name: c["ds"] for name, c in cases.items()}
    for name, c in cases.items():
        assert c["commands"] == [c["ds"]], name  # every task of a run gets the same --ds
    # Scheduled: the run starting at 02:00 on D+1 processes D.
    assert [ds[f"scheduled_{i}"] for i in range(3)] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert cases["scheduled_1"]["interval_start"] == "2026-11-02T02:00:00+00:00"
    # Backfill --from-date 2026-11-01 --to-date 2026-11-03T02:00:00+00:00 (docs/OPERATIONS.md): three days.
    assert sorted(v for k, v in ds.items() if k.startswith("backfill_")) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    # `airflow dags test dynamix_nightly 2026-11-02`: Airflow infers the interval [10-31 02:00, 11-01 02:00)
    # (the last complete one before the logical date); the day named is still the day processed.
    assert cases["dags_test"]["interval_start"] == "2026-10-31T02:00:00+00:00"
    assert ds["dags_test"] == "2026-11-02"
    assert ds["cli_trigger_logical_date"] == "2026-11-02"
    assert ds["ui_trigger"] == "2026-11-02"
    # No date at all: the last complete day at trigger time (what a scheduled run then would process).
    assert ds["trigger_no_date_morning"] == "2026-11-02"
    assert ds["trigger_no_date_before_2am"] == "2026-11-01"
    # The ds param overrides.
    assert ds["trigger_param_ds"] == "2026-10-15"
    assert ds["dags_test_param_ds"] == "2026-11-03"
    assert ds["scheduled_param_ds"] == "2026-11-05"
    assert "2026-13-01" in probe["dag"]["bad_param"]
    assert probe["dag"]["params"]["ds"] is None and probe["dag"]["params_ok"] is True


def test_commands_are_the_documented_spark_submit_lines(probe):
    for task_id in SUBMIT_TASKS:
        t = probe["dag"]["tasks"][task_id]
        job = f"jobs/{task_id}.py"
        expected = (f'cd "{ROOT}" && bash scripts/spark.sh submit --master \'local[2]\' --py-files dist/dynamix_pyfiles.zip '
                    f"{job} --config conf/local.yaml --ds 2026-11-02")
        assert t["command"] == expected
        argv = shlex.split(t["command"].split("&&", 1)[1])
        assert (ROOT / argv[argv.index("--config") + 1]).is_file()
        assert (ROOT / job).is_file()
        assert "--master" in argv and argv[argv.index("--master") + 1] == "local[2]"
