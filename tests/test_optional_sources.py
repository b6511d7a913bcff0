"""Sources a deployment does not have (issue 15, section 2): ``paths.required_sources``.

Ad impressions and conversions are required (always: the statistics and the examples are made of them);
organic and page impressions are optional by default. One lake, three days far enough apart that no day's
lookback (``ebf.lookback_days`` = 2), neighbour-day read or drift check sees another day's rows, each written
here with pyarrow and run through denoise -> user_window_stats -> build_ebf (day A in the fast part, about
3 min for the file; days B and C and the maintenance run in the slow part, about 6 min more):

- A: no ``organic_impressions`` folder, on a new lake (a deployment that never had organic logs: there is no
  ``clean_organic_impressions`` table when A runs); then maintenance (OPTIMIZE, VACUUM) and catalog
  registration of A;
- B: no ``page_impressions`` folder (its clean table exists from A: B's partition is replaced by no rows);
- C: ``organic_impressions`` present with one 0-row file and its ``_SUCCESS`` marker.

Each day completes; the missing source's sequences have length 0 in every example; every example of the
others has the length a brute force over the rows written here gives (pandas); the example count is the
number of ad impressions written (and of clean ad impressions, read with pandas); the warnings are in
``quality_results`` and ``run_metrics``. A required source that is absent fails before any write (every
table's version unchanged), naming the source; listing organic as required brings back the failure for an
absent organic partition. The Airflow sensor waits only for the required sources (``.venv-airflow``).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conftest import ROOT
from dynamix_spark.config import ConfigError, PathsConfig, load_config
from dynamix_spark.raw_io import RawInputError
from schemas.ebf import len_col, seq_col
from schemas.raw import RAW_SCHEMAS, RAW_SOURCES

pytestmark = pytest.mark.usefixtures("few_delta_tasks")

LOCAL = ROOT / "conf" / "local.yaml"
AIRFLOW_PY = ROOT / ".venv-airflow" / "bin" / "python"
A, B, C = "2026-11-02", "2026-11-06", "2026-11-10"
DAYS = (A, B, C)
ORGANIC, PAGE = "organic_impressions", "page_impressions"
# day -> (source, how it is missing)
SCENARIOS = {A: (ORGANIC, "absent"), B: (PAGE, "absent"), C: (ORGANIC, "empty")}
EBF_SRC = {"ad_impressions": "ad", ORGANIC: "organic", PAGE: "page"}
USERS = (1, 2, 3, 4)
SEQ_LEN = 16  # conf/local.yaml's ebf.seq_len for every source
DB = "optional_sources_test"


def _cfg(raw_root, lake_root, *extra: str):
    return load_config(LOCAL, [f"paths.raw_root={raw_root}", f"paths.lake_root={lake_root}", f"paths.database={DB}",
                               "spark.conf={}", "quality.docs_dir=\"\"", "segmentation.epsilon_mode=fixed",
                               "ebf.build_policies=[boost_all]", *extra])


# ---------------------------------------------------------------------------------------------------------
# Raw days written by hand (pyarrow), every row valid
# ---------------------------------------------------------------------------------------------------------

def _arrow_type(t):
    return {T.StringType: pa.string(), T.LongType: pa.int64(), T.IntegerType: pa.int32(),
            T.TimestampType: pa.timestamp("us")}.get(type(t)) or pa.list_(_arrow_type(t.elementType))


def _arrow_schema(source: str) -> pa.Schema:
    return pa.schema([pa.field(f.name, _arrow_type(f.dataType)) for f in RAW_SCHEMAS[source].fields])


def day_rows(ds: str) -> dict[str, list[dict]]:
    """Every source's rows of a day: 10 ad impressions per user (2 h apart), 3 conversions per user on the ad
    of an impression 2 min earlier, 6 organic impressions and 4 + user_id page impressions per user."""
    d0 = dt.datetime.fromisoformat(ds)
    rows: dict[str, list[dict]] = {s: [] for s in RAW_SOURCES}
    for u in USERS:
        for i in range(10):
            rows["ad_impressions"].append(dict(
                event_id=f"ad-{ds}-{u}-{i}", user_id=u, event_ts=d0 + dt.timedelta(hours=1 + 2 * i, minutes=u),
                ad_id=100 + i % 3, campaign_id=10, advertiser_id=20, category_id=30 + i % 2, semantic_ids=[1, i],
                surface="feed", media_type="image", position=i, device_type="ios", dwell_ms=1000 + 700 * (i * u % 7)))
        for i in (0, 3, 6):
            rows["conversions"].append(dict(
                event_id=f"cv-{ds}-{u}-{i}", user_id=u, event_ts=d0 + dt.timedelta(hours=1 + 2 * i, minutes=u + 2),
                ad_id=100 + i % 3, conversion_type="click"))
        for j in range(6):
            rows[ORGANIC].append(dict(
                event_id=f"org-{ds}-{u}-{j}", user_id=u, event_ts=d0 + dt.timedelta(hours=3 * j, minutes=30 + u),
                content_id=500 + j, dwell_ms=2000 + 100 * j, media_type="video", position=j))
        for j in range(4 + u):
            rows[PAGE].append(dict(
                event_id=f"page-{ds}-{u}-{j}", user_id=u, event_ts=d0 + dt.timedelta(hours=3 * j, minutes=45 + u),
                page_id=900 + j, semantic_ids=[7, j], media_type="text"))
    return rows


def write_day(raw_root: Path, ds: str, rows: dict[str, list[dict]], absent: tuple[str, ...] = (),
              empty: tuple[str, ...] = ()) -> None:
    """The day's partitions with their _SUCCESS markers; ``absent`` sources get no folder, ``empty`` ones a
    0-row file."""
    for src in RAW_SOURCES:
        if src in absent:
            continue
        part = raw_root / src / f"ds={ds}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([] if src in empty else rows[src], schema=_arrow_schema(src)),
                       part / "part-0.parquet")
        (part / "_SUCCESS").write_bytes(b"")


def written(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "event_ts"])
    df["t_us"] = df["event_ts"].astype("datetime64[us]").astype("int64")
    return df


def brute_force_len(examples: pd.DataFrame, events: pd.DataFrame, lookback_start_us: int) -> list[int]:
    """Per example: the user's events strictly before the impression and not before the lookback, at most
    SEQ_LEN (one loop per example: no sort, no search)."""
    out = []
    for u, t in zip(examples["user_id"], examples["event_ts_us"]):
        mine = events[(events["user_id"] == u) & (events["t_us"] < t) & (events["t_us"] >= lookback_start_us)]
        out.append(min(SEQ_LEN, len(mine)))
    return out


def _delta_versions(spark, lake: Path) -> dict[str, int]:
    from delta.tables import DeltaTable

    return {p.name: DeltaTable.forPath(spark, str(p)).history(1).select("version").first()[0]
            for p in sorted(lake.iterdir()) if (p / "_delta_log").is_dir()}


def _delta_tables(lake: Path) -> list[str]:
    return sorted(p.name for p in lake.iterdir() if (p / "_delta_log").is_dir())


def _run_day(spark, cfg, ds: str) -> None:
    from jobs import build_ebf, denoise, user_window_stats

    denoise.run(spark, cfg, ds)
    user_window_stats.run(spark, cfg, ds)
    build_ebf.run(spark, cfg, ds)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """The three days' raw partitions, and day A run on a new lake (about 2 min on the loaded 2-core machine)."""
    from dynamix_spark.delta_io import is_delta
    from jobs import nightly

    root = tmp_path_factory.mktemp("optional_sources")
    raw, lake_root = root / "raw", root / "lake"
    cfg = _cfg(raw, lake_root)
    rows = {ds: day_rows(ds) for ds in DAYS}
    write_day(raw, A, rows[A], absent=(ORGANIC,))
    write_day(raw, B, rows[B], absent=(PAGE,))
    write_day(raw, C, rows[C], empty=(ORGANIC,))
    out = {"cfg": cfg, "raw": raw, "lake": lake_root, "rows": rows,
           "present": nightly.check_inputs(spark, cfg, list(DAYS))}
    _run_day(spark, cfg, A)
    out["organic_table_after_A"] = is_delta(spark, str(lake_root / "clean_organic_impressions"))
    yield out
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")


@pytest.fixture(scope="module")
def later_days(spark, lake):
    """Maintenance and catalog registration of day A (no clean_organic_impressions yet), then days B and C
    (about 5 min more): the slow part."""
    from jobs import maintenance

    lake["tables_before_maintenance"] = _delta_tables(lake["lake"])
    lake["maintenance"] = maintenance.run(spark, lake["cfg"], [A])
    for ds in (B, C):
        _run_day(spark, lake["cfg"], ds)
    return lake


def _day(request, lake, ds: str) -> dict:
    return lake if ds == A else request.getfixturevalue("later_days")


def _scenario_params():
    return [pytest.param(ds, id=f"{src}_{how}", marks=() if ds == A else pytest.mark.slow)
            for ds, (src, how) in SCENARIOS.items()]


def _read(spark, lake: Path, table: str, ds: str):
    return spark.read.format("delta").load(str(lake / table)).where(F.col("ds") == ds)


# ---------------------------------------------------------------------------------------------------------
# Configuration (no Spark)
# ---------------------------------------------------------------------------------------------------------

def test_required_sources_default_and_validation():
    assert PathsConfig().required_sources == ("ad_impressions", "conversions")
    assert load_config(LOCAL).paths.required_sources == ("ad_impressions", "conversions")  # documented there too
    assert load_config(ROOT / "conf" / "cluster.yaml").paths.required_sources == ("ad_impressions", "conversions")
    every = load_config(LOCAL, ["paths.required_sources=[ad_impressions, conversions, organic_impressions, "
                                "page_impressions]"])
    assert every.paths.required_sources == tuple(RAW_SOURCES)
    bad = {"[ad_impressions, conversions, clicks]": r"paths\.required_sources: unknown sources \['clicks'\]",
           "[ad_impressions]": r"paths\.required_sources: must include .*missing \['conversions'\]",
           "[]": r"paths\.required_sources: must include .*missing \['ad_impressions', 'conversions'\]",
           "[ad_impressions, conversions, conversions]": r"paths\.required_sources: lists a source twice",
           "conversions": r"paths\.required_sources: expected a list"}
    for value, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(LOCAL, [f"paths.required_sources={value}"])


def test_an_empty_table_blocks_only_for_a_required_source():
    from dynamix_spark.quality import suite_settings
    from schemas.expectations import suite

    def severity(cfg, table):
        return next(e.severity for e in suite(table, suite_settings(cfg), A) if e.name == "row_count_positive")

    cfg = load_config(LOCAL)
    want = {"raw_ad_impressions": "critical", "clean_ad_impressions": "critical", "raw_conversions": "critical",
            "clean_conversions": "critical", "raw_organic_impressions": "warning",
            "clean_organic_impressions": "warning", "raw_page_impressions": "warning",
            "clean_page_impressions": "warning"}
    assert {t: severity(cfg, t) for t in want} == want
    organic = load_config(LOCAL, ["paths.required_sources=[ad_impressions, conversions, organic_impressions]"])
    assert severity(organic, "clean_organic_impressions") == "critical"
    assert severity(organic, "clean_page_impressions") == "warning"


# ---------------------------------------------------------------------------------------------------------
# Days with an optional source absent or empty
# ---------------------------------------------------------------------------------------------------------

def test_input_check_lists_the_sources_present(lake):
    everything = tuple(RAW_SOURCES)
    assert lake["present"] == {A: tuple(s for s in everything if s != ORGANIC),
                               B: tuple(s for s in everything if s != PAGE), C: everything}


@pytest.mark.parametrize("ds", _scenario_params())
def test_day_completes_with_length_0_sequences_for_the_missing_source(spark, lake, request, ds):
    lake = _day(request, lake, ds)
    missing, _how = SCENARIOS[ds]
    rows = lake["rows"][ds]
    ex = _read(spark, lake["lake"], "ebf_examples", ds).where(F.col("policy") == "boost_all").select(
        "user_id", "event_ts_us", *[len_col(s) for s in EBF_SRC.values()],
        *[seq_col(EBF_SRC[missing], a) for a in ("event_ts", "media_type")]).toPandas()
    # One example per ad impression written (every one valid), and per clean ad impression (read with pandas).
    clean_ad = _read(spark, lake["lake"], "clean_ad_impressions", ds).select("event_id").toPandas()
    assert len(ex) == len(rows["ad_impressions"]) == len(clean_ad) == 40
    assert sorted(zip(ex["user_id"], ex["event_ts_us"])) == sorted(
        zip(written(rows["ad_impressions"])["user_id"], written(rows["ad_impressions"])["t_us"]))
    # The missing source: length 0 and nothing but padding in every example.
    src = EBF_SRC[missing]
    assert (ex[len_col(src)] == 0).all(), ex[len_col(src)].value_counts()
    for a in ("event_ts", "media_type"):
        assert all(len(v) == SEQ_LEN and not any(v) for v in ex[seq_col(src, a)])
    # The sources that are there: exactly the brute force over the rows written (no other day in the lookback).
    start = int((pd.Timestamp(ds) - pd.Timedelta(days=lake["cfg"].ebf.lookback_days)).value // 1000)
    for source, s in EBF_SRC.items():
        if source == missing:
            continue
        want = brute_force_len(ex, written(rows[source]), start)
        assert list(ex[len_col(s)]) == want, source
        assert max(want) > 0, source  # the check can fail: the source does fill sequences


@pytest.mark.parametrize("ds", _scenario_params())
def test_warnings_in_quality_results_and_run_metrics(spark, lake, request, ds):
    lake = _day(request, lake, ds)
    missing, how = SCENARIOS[ds]
    qr = [r.asDict() for r in _read(spark, lake["lake"], "quality_results", ds).collect()]
    failed = {(r["table"], r["expectation"], r["severity"]) for r in qr if not r["success"]}
    assert not [f for f in failed if f[2] == "critical"], failed
    want = {(f"raw_{missing}", "row_count_positive", "warning"), (f"clean_{missing}", "row_count_positive", "warning")}
    if how == "absent":
        want.add((f"raw_{missing}", "source_present", "warning"))
    assert want <= failed, failed
    # Only the missing source warns about being empty or absent.
    assert {f for f in failed if f[1] in ("row_count_positive", "source_present")} == want
    present = {r["table"]: (r["severity"], r["success"]) for r in qr if r["expectation"] == "source_present"}
    assert present == {f"raw_{s}": ("warning" if s in (ORGANIC, PAGE) else "critical", not (s == missing and how == "absent"))
                       for s in RAW_SOURCES}

    metrics = [r.asDict() for r in _read(spark, lake["lake"], "run_metrics", ds).collect()]
    assert {"denoise", "user_window_stats", "build_ebf"} <= {r["job"] for r in metrics if r["status"] == "succeeded"}
    assert not [r for r in metrics if r["status"] != "succeeded"]
    by_source = {r["source"]: r for r in metrics if r["job"] == "denoise"}
    m = by_source[missing]
    params = json.loads(m["params"])
    assert (m["rows_in"], m["rows_out"], m["rows_quarantined"]) == (0, 0, 0)
    assert params["source_state"] == how and missing in params["source_warning"] and how in params["source_warning"]
    assert "row_count_positive" in params["quality_warnings"]
    assert ("source_present" in params["quality_warnings"]) == (how == "absent")
    for s in RAW_SOURCES:
        if s != missing:
            p = json.loads(by_source[s]["params"])
            assert p["source_state"] == "present" and "source_warning" not in p, s
            assert by_source[s]["rows_in"] == len(lake["rows"][ds][s]), s
    # Nothing of the missing source in the day's clean partition or quarantine.
    if (lake["lake"] / f"clean_{missing}" / "_delta_log").is_dir():
        assert _read(spark, lake["lake"], f"clean_{missing}", ds).count() == 0
    assert _read(spark, lake["lake"], "quarantine", ds).where(F.col("source") == missing).count() == 0


def test_a_source_never_seen_gets_no_table(spark, lake):
    """Day A ran on a new lake without organic logs: denoise created no clean_organic_impressions, build_ebf read
    it as no rows and says so."""
    assert lake["organic_table_after_A"] is False
    ebf = [json.loads(r["params"]) for r in _read(spark, lake["lake"], "run_metrics", A)
           .where(F.col("job") == "build_ebf").collect()]
    assert [p["missing_source_tables"] for p in ebf] == [["clean_organic_impressions"]]
    den = {r["source"]: r["delta_versions"] for r in _read(spark, lake["lake"], "run_metrics", A)
           .where(F.col("job") == "denoise").collect()}
    assert set(den[ORGANIC]) == {"quarantine"} and set(den[PAGE]) == {"clean_page_impressions", "quarantine"}


@pytest.mark.slow
def test_maintenance_and_catalog_of_a_lake_without_a_sources_table(spark, later_days):
    """OPTIMIZE, VACUUM and registration of day A, whose lake has no clean_organic_impressions: every table that
    is there, nothing else; later, day B (organic present) created the table and A's partition of it is empty."""
    lake = later_days
    tables = lake["tables_before_maintenance"]
    assert "clean_organic_impressions" not in tables and "clean_page_impressions" in tables
    report = lake["maintenance"]
    assert sorted(report["tables"]) == tables
    assert sorted(report["catalog"]["created"]) == tables
    assert _read(spark, lake["lake"], "clean_organic_impressions", B).count() == len(lake["rows"][B][ORGANIC])
    assert _read(spark, lake["lake"], "clean_organic_impressions", A).count() == 0


# ---------------------------------------------------------------------------------------------------------
# A required source absent: fails before any write, naming it
# ---------------------------------------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("missing, required", [
    ("conversions", None),
    ("ad_impressions", None),
    (ORGANIC, "[ad_impressions, conversions, organic_impressions]"),  # the old behaviour, by configuration
], ids=["conversions", "ad_impressions", "organic_listed_as_required"])
def test_a_required_source_absent_fails_before_any_write(spark, lake, tmp_path, missing, required):
    from jobs import denoise, nightly

    ds = "2026-11-14"
    raw = tmp_path / "raw"
    write_day(raw, ds, day_rows(ds), absent=(missing,))
    extra = [f"paths.required_sources={required}"] if required else []
    cfg = _cfg(raw, lake["lake"], *extra)
    before, raw_files = _delta_versions(spark, lake["lake"]), _tree(raw)
    pattern = rf"missing raw input: .*/{missing}/ds={ds} does not exist.*{missing} is a required source"
    with pytest.raises(RawInputError, match=pattern):
        nightly.check_inputs(spark, cfg, [ds])
    with pytest.raises(RawInputError, match=pattern):
        denoise.run(spark, cfg, ds)
    # Every table of the lake at its version (quality_results and run_metrics included: no gate ran), and the
    # raw input as it was.
    assert _delta_versions(spark, lake["lake"]) == before
    assert _tree(raw) == raw_files


def test_an_optional_folder_without_its_marker_is_incomplete_not_absent(spark, lake, tmp_path):
    """A landing job still writing an optional source: the folder exists without _SUCCESS; that fails the day
    (it would otherwise run without rows that are on their way)."""
    from jobs import denoise

    ds = "2026-11-14"
    raw = tmp_path / "raw"
    write_day(raw, ds, day_rows(ds))
    (raw / PAGE / f"ds={ds}" / "_SUCCESS").unlink()
    before = _delta_versions(spark, lake["lake"])
    with pytest.raises(RawInputError, match=rf"incomplete raw input: .*{PAGE}/ds={ds} has no _SUCCESS"):
        denoise.run(spark, _cfg(raw, lake["lake"]), ds)
    assert _delta_versions(spark, lake["lake"]) == before


# ---------------------------------------------------------------------------------------------------------
# The Airflow sensor waits for the required sources only (Airflow's own environment)
# ---------------------------------------------------------------------------------------------------------

SENSOR_PROBE = r"""
import importlib.util, json, os, sys
repo, dag_file, ds = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("dynamix_nightly_dag", dag_file)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
raw = os.path.join(repo, "raw")
out = {"required_default": list(mod.REQUIRED_SOURCES)}
def check(name, profile):
    out[name] = {"awaited": mod.awaited_raw_markers(repo, profile, ds),
                 "missing": mod.missing_raw_markers(repo, profile, ds), "ready": mod._raw_ready(repo, profile, ds)}
check("organic_absent_page_landing", "conf/default.yaml")
open(os.path.join(raw, "page_impressions", f"ds={ds}", "_SUCCESS"), "w").close()
check("organic_absent", "conf/default.yaml")
check("organic_required", "conf/organic.yaml")
os.remove(os.path.join(raw, "conversions", f"ds={ds}", "_SUCCESS"))
check("conversions_landing", "conf/default.yaml")
print("PROBE_JSON=" + json.dumps(out))
"""


def test_the_raw_sensor_waits_only_for_the_required_sources(tmp_path):
    if not AIRFLOW_PY.exists():
        if os.environ.get("DYNAMIX_SKIP_AIRFLOW") == "1":
            pytest.skip("DYNAMIX_SKIP_AIRFLOW=1: .venv-airflow not installed")
        pytest.fail(f"{AIRFLOW_PY} missing: run `bash scripts/bootstrap.sh` (it installs Airflow into .venv-airflow)")
    ds = "2026-11-02"
    repo = tmp_path / "repo"
    (repo / "conf").mkdir(parents=True)
    (repo / "conf" / "default.yaml").write_text("paths:\n  raw_root: raw\n")
    (repo / "conf" / "organic.yaml").write_text(
        "extends: default.yaml\npaths:\n  required_sources: [ad_impressions, conversions, organic_impressions]\n")
    for src in ("ad_impressions", "conversions", PAGE):  # no organic folder; page's without its marker yet
        (repo / "raw" / src / f"ds={ds}").mkdir(parents=True)
        if src != PAGE:
            (repo / "raw" / src / f"ds={ds}" / "_SUCCESS").write_bytes(b"")
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNAMIX_", "AIRFLOW", "PYTHON", "PYSPARK"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    r = subprocess.run([str(AIRFLOW_PY), "-c", SENSOR_PROBE, str(repo), str(ROOT / "dags" / "dynamix_nightly.py"), ds],
                       env=env, cwd=home, capture_output=True, text=True, timeout=300)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("PROBE_JSON=")]
    assert r.returncode == 0 and line, f"probe failed (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    got = json.loads(line[-1].removeprefix("PROBE_JSON="))
    assert tuple(got["required_default"]) == PathsConfig().required_sources  # the DAG's copy of the default

    def marker(src):
        return f"{repo}/raw/{src}/ds={ds}/_SUCCESS"

    assert got["organic_absent_page_landing"] == {"awaited": [marker(PAGE)], "missing": [marker(ORGANIC), marker(PAGE)],
                                                  "ready": False}
    assert got["organic_absent"] == {"awaited": [], "missing": [marker(ORGANIC)], "ready": True}
    assert got["organic_required"] == {"awaited": [marker(ORGANIC)], "missing": [marker(ORGANIC)], "ready": False}
    assert got["conversions_landing"] == {"awaited": [marker("conversions")],
                                          "missing": [marker("conversions"), marker(ORGANIC)], "ready": False}
