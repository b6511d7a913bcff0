"""The run ledger (issue 15, section 1): no reader ever consumes half a run.

One lake, one day (the middle day of the generated dataset, copied from ``tiny_raw``): an old run of denoise ->
user_window_stats -> build_ebf on the raw as generated, then a new run of each job on the raw thinned by the test
(every 7th row of every raw file dropped, so every table the jobs write differs between the runs). Each new run
is killed after its last commit (the commit loop's ``overwrite_partition`` is wrapped: after commit k the test
takes every downstream reader's view of the lake, the lake being exactly as a kill after commit k leaves it; after
commit n, the last, it raises), then re-run to completion, views taken again after each of its commits. The
readers (for each table the job writes):

- the jobs' own readers: ``user_window_stats.read_inputs`` and ``build_ebf.read_inputs`` (every DataFrame they
  return, as a row-multiset fingerprint);
- the documented SQL (docs/OPERATIONS.md section 4): the ledger's version of the table for the day, then the
  table ``VERSION AS OF`` it;
- the training side's ``training.delta_snapshot.published_snapshot`` (the loader's default): the day's files.

Expectations are captured independently of the ledger code, from complete states only: right after the old run
and right after the re-run completed, with the pre-ledger readers (the jobs' ``read_inputs`` with a plain
latest-version read in place of ``read_published``, plain SQL without ``VERSION AS OF``, the latest version's
files from the Delta log). Every view after a commit without the ledger row must equal the old run's, every view
after the ledger row the new run's, and the two must differ (so a mixed view could not pass).
"""
from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from conftest import MID_DS, ROOT, tiny_overrides
from dynamix_spark.config import load_config
from dynamix_spark.delta_io import overwrite_partition, table_path
from dynamix_spark.quality import GateResult
from schemas.names import (EBF_EXAMPLES_TABLE, QUARANTINE_TABLE, RUN_LEDGER_TABLE, USER_SEGMENTS_TABLE,
                           USER_WINDOW_STATS_TABLE, clean_table_name)
from schemas.raw import RAW_SOURCES
from training.delta_snapshot import load_snapshot, published_snapshot

# Delta's snapshot reconstruction in 2 partitions, not 50 (each read and commit here is a few of them).
pytestmark = pytest.mark.usefixtures("few_delta_tasks")

D = MID_DS
CLEAN = [clean_table_name(s) for s in RAW_SOURCES]
JOB_TABLES = {"denoise": [*CLEAN, QUARANTINE_TABLE],
              "user_window_stats": [USER_WINDOW_STATS_TABLE, USER_SEGMENTS_TABLE],
              "build_ebf": [EBF_EXAMPLES_TABLE]}
ALL_TABLES = [t for ts in JOB_TABLES.values() for t in ts]


class Killed(RuntimeError):
    """The injected fault: the driver dies after commit k."""


def _copy_day(src_root: str, dst_root: Path, keep_every: int | None) -> None:
    """The day's raw partitions (and markers) of every source; with ``keep_every`` = n, every n-th row dropped."""
    for src in RAW_SOURCES:
        src_dir = Path(src_root) / src / f"ds={D}"
        out = dst_root / src / f"ds={D}"
        out.mkdir(parents=True)
        for f in sorted(src_dir.iterdir()):
            if f.name.startswith("."):  # Hadoop's .crc files: a rewritten file must not keep the old checksum
                continue
            if f.suffix != ".parquet" or keep_every is None:
                shutil.copy(f, out / f.name)
                continue
            t = pq.read_table(f)
            pq.write_table(t.take([i for i in range(t.num_rows) if i % keep_every != keep_every - 1]), out / f.name,
                           coerce_timestamps="us")


def _fp(df) -> tuple:
    """A row-multiset fingerprint: (rows, sum of a 64-bit hash of every row's columns)."""
    r = df.select(F.count(F.lit(1)).alias("n"),
                  F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)")).alias("h")).first()
    return int(r["n"]), str(r["h"])


def _latest(spark, lake: str, table: str, days):
    """The pre-ledger reader: every day at the table's latest version."""
    return spark.read.format("delta").load(table_path(lake, table)).where(F.col("ds").isin(list(days)))


# The downstream readers' views each job's tables feed (build_ebf's output is read by training and SQL only).
JOB_READER_VIEWS = {
    "denoise": ("stats.impressions", "stats.conversions", "stats.conversion_days", "ebf.queries", "ebf.conversions",
                "ebf.events.ad", "ebf.events.organic", "ebf.events.page"),
    "user_window_stats": ("ebf.segments",),
    "build_ebf": (),
}


def _job_views(spark, cfg, keys) -> dict:
    from jobs import build_ebf, user_window_stats

    if not keys:
        return {}
    imps, conv, present = user_window_stats.read_inputs(spark, cfg, D)
    inp = build_ebf.read_inputs(spark, cfg, D)
    frames = {"stats.impressions": imps, "stats.conversions": conv, "ebf.queries": inp["queries"],
              "ebf.segments": inp["segments"], "ebf.conversions": inp["conversions"],
              **{f"ebf.events.{src}": df for src, df in inp["events"].items()}}
    return {k: present if k == "stats.conversion_days" else _fp(frames[k]) for k in keys}


def _sql_views(spark, lake: str, tables, ledger: bool) -> dict:
    """The documented SQL: the ledger's version of each table for the day, then the table VERSION AS OF it
    (``ledger=False``: the plain query at the latest version)."""
    versions = {}
    if ledger and Path(lake, RUN_LEDGER_TABLE).exists():
        versions = {r["table"]: r["version"] for r in spark.sql(
            f"SELECT t.key AS table, max(t.value) AS version FROM delta.`{lake}/{RUN_LEDGER_TABLE}` "
            f"LATERAL VIEW explode(versions) t AS key, value WHERE ds = '{D}' GROUP BY t.key").collect()}
    out = {}
    for t in tables:
        at = f" VERSION AS OF {versions[t]}" if versions.get(t) is not None else ""
        out[f"sql.{t}"] = _fp(spark.sql(f"SELECT * FROM delta.`{lake}/{t}`{at} WHERE ds = '{D}'"))
    return out


def _train_views(lake: str, tables, ledger: bool) -> dict:
    out = {}
    for t in tables:
        path = f"{lake}/{t}"
        files = (published_snapshot(path, [D]).files if ledger else
                 [f for f in load_snapshot(path).files if f.partition_values.get("ds") == D])
        out[f"train.{t}"] = sorted(f.path for f in files)
    return out


def views(spark, cfg, tables, keys, ledger: bool = True) -> dict:
    lake = str(Path(cfg.paths.lake_root).resolve())
    return {**_job_views(spark, cfg, keys), **_sql_views(spark, lake, tables, ledger),
            **_train_views(lake, tables, ledger)}


def expected_views(spark, cfg, job: str) -> dict:
    """The views of ``job``'s tables in a complete state through the pre-ledger readers (nothing of
    dynamix_spark.ledger)."""
    from jobs import build_ebf, user_window_stats

    with pytest.MonkeyPatch.context() as m:
        m.setattr(user_window_stats, "read_published", _latest)
        m.setattr(build_ebf, "read_published", _latest)
        return views(spark, cfg, JOB_TABLES[job], JOB_READER_VIEWS[job], ledger=False)


def _no_gate(spark, df, table, ds, cfg, *, job, run_id, **kwargs) -> GateResult:
    """A gate with no checks: the quality suites are not what this file tests, and they are most of a job's time
    on the test machine (tests/test_quality.py and the jobs' own tests run them)."""
    return GateResult(run_id, job, table, ds, (), dt.datetime.now(dt.timezone.utc), 0.0)


def _run_job(job: str, spark, cfg) -> None:
    from jobs import build_ebf, denoise, user_window_stats

    {"denoise": denoise.run, "user_window_stats": user_window_stats.run, "build_ebf": build_ebf.run}[job](spark, cfg, D)


@pytest.fixture(scope="module")
def scenario(spark, tiny_cfg, tiny_raw, tmp_path_factory):
    """Old runs, then for each job a new run killed after its last commit and its re-run; the views after every
    commit and the expectations. Returns {job: {...}} and the timings."""
    from dynamix_spark import staged_write

    root = tmp_path_factory.mktemp("ledger")
    _copy_day(tiny_cfg.paths.raw_root, root / "raw_old", None)
    _copy_day(tiny_cfg.paths.raw_root, root / "raw_new", 7)
    base = [*tiny_overrides(root), "quality.docs_dir=''", "ebf.build_policies=[baseline,boost_active]"]
    cfg_old = load_config(ROOT / "conf" / "local.yaml", [*base, f"paths.raw_root={root}/raw_old"])
    cfg_new = load_config(ROOT / "conf" / "local.yaml", [*base, f"paths.raw_root={root}/raw_new"])
    timings = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(staged_write, "gate", _no_gate)
    try:
        t0 = time.monotonic()
        for job in JOB_TABLES:
            _run_job(job, spark, cfg_old)
        timings["old_runs_s"] = round(time.monotonic() - t0, 1)
        print(f"old runs: {timings['old_runs_s']} s", flush=True)
        out = {}
        for job, tables in JOB_TABLES.items():
            t0 = time.monotonic()
            old = expected_views(spark, cfg_new, job)  # the lake before this job's new run, through plain reads
            seen: list[tuple[str, int, str, dict]] = []  # (attempt, k, table, views)
            state = {"attempt": "killed", "k": 0}

            def commit_then_look(df, path, ds, schema, commit_info, **kw):
                version = overwrite_partition(df, path, ds, schema, commit_info, **kw)
                state["k"] += 1
                seen.append((state["attempt"], state["k"], Path(path).name,
                             views(spark, cfg_new, tables, JOB_READER_VIEWS[job])))
                if state["attempt"] == "killed" and state["k"] == len(tables):
                    raise Killed(f"{job}: killed after commit {state['k']} ({Path(path).name})")
                return version

            mp.setattr(staged_write, "overwrite_partition", commit_then_look)
            with pytest.raises(Killed):
                _run_job(job, spark, cfg_new)
            state.update(attempt="re-run", k=0)
            _run_job(job, spark, cfg_new)  # the re-run completes
            mp.setattr(staged_write, "overwrite_partition", overwrite_partition)
            after = views(spark, cfg_new, tables, JOB_READER_VIEWS[job])
            new = expected_views(spark, cfg_new, job)
            out[job] = {"seen": seen, "after": after, "old": old, "new": new,
                        "seconds": round(time.monotonic() - t0, 1)}
            print(f"{job}: {out[job]['seconds']} s", flush=True)
        return {"jobs": out, "timings": timings, "cfg": cfg_new}
    finally:
        mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize("job", list(JOB_TABLES))
def test_a_kill_after_any_commit_leaves_every_reader_on_the_old_run(scenario, job):
    s = scenario["jobs"][job]
    n = len(JOB_TABLES[job])
    assert [(a, k) for a, k, _, _ in s["seen"]] == [("killed", k) for k in range(1, n + 1)] + \
        [("re-run", k) for k in range(1, n + 1)]
    assert [t for _, _, t, _ in s["seen"]] == JOB_TABLES[job] * 2
    for attempt, k, table, v in s["seen"]:
        wrong = sorted(key for key in v if v[key] != s["old"][key])
        assert not wrong, f"{job} {attempt} after commit {k} ({table}): views not the old run's: {wrong}"


@pytest.mark.slow
@pytest.mark.parametrize("job", list(JOB_TABLES))
def test_the_completed_rerun_is_what_every_reader_sees(scenario, job):
    s = scenario["jobs"][job]
    assert s["after"] == {k: s["new"][k] for k in s["after"]}
    # The runs differ in every view of the job's tables, so a mixed view could not pass as either.
    # (quarantine, which no downstream job reads, may hold no row of the day in either run)
    keys = [f"{side}.{t}" for t in JOB_TABLES[job] if t != QUARANTINE_TABLE for side in ("sql", "train")]
    same = [k for k in keys if s["old"][k] == s["new"][k]]
    assert not same, same
    downstream = [k for k in JOB_READER_VIEWS[job] if k != "stats.conversion_days"]
    assert [k for k in downstream if s["old"][k] == s["new"][k]] == []


@pytest.mark.slow
def test_ledger_rows_name_every_table_committed(spark, scenario):
    lake = scenario["cfg"].paths.lake_root
    rows = spark.read.format("delta").load(table_path(lake, RUN_LEDGER_TABLE)).collect()
    by_job: dict[str, list] = {}
    for r in rows:
        by_job.setdefault(r["job"], []).append(r)
    # one row per completed run (old and re-run), none for the killed runs; every committed table named
    assert {j: len(rs) for j, rs in by_job.items()} == {j: 2 for j in JOB_TABLES}
    for job, rs in by_job.items():
        assert all(sorted(r["versions"]) == sorted(JOB_TABLES[job]) and r["ds"] == D for r in rs)
        old, new = sorted(rs, key=lambda r: r["committed_at"])
        # the killed run's commits lie between the two recorded versions of every table
        assert all(new["versions"][t] == old["versions"][t] + 2 for t in JOB_TABLES[job]), (old, new)
    print("timings:", scenario["timings"], {j: round(x["seconds"], 1) for j, x in scenario["jobs"].items()})


# ---------------------------------------------------------------------------------------------------------------
# Fast part: the same kill after each commit on a stage of three small tables, and the roll-forward, with the rows
# the test writes as the expectation.

DAY, OTHER = "2026-11-02", "2026-11-03"
SMALL_TABLES = ("clean_ad_impressions", "clean_conversions", "quarantine")


def _small_rows(spark, table: str, ds: str, tag: str, n: int):
    """``n`` rows of ``table`` for ``ds`` whose ``event_id`` (quarantine: ``source_file``) is ``<tag>-<ds>-<i>``."""
    from schemas.tables import CLEAN_TABLES, QUARANTINE

    base = dt.datetime.fromisoformat(ds) + dt.timedelta(hours=10)
    if table == "quarantine":
        return spark.createDataFrame([("ad_impressions", "invalid_dwell", f"{tag}-{ds}-{i}", "{}", tag, ds)
                                      for i in range(n)], QUARANTINE)
    schema = CLEAN_TABLES[table]
    rows = []
    for i in range(n):
        r = dict(event_id=f"{tag}-{ds}-{i}", user_id=100 + i, event_ts=base + dt.timedelta(minutes=i), ad_id=10 + i,
                 campaign_id=3, advertiser_id=2, category_id=5, semantic_ids=[1, 2], surface="feed", media_type="video",
                 position=i, device_type="ios", dwell_ms=1_000 * (i + 1), conversion_type="click", ds=ds)
        rows.append(tuple(r[f.name] for f in schema.fields))
    return spark.createDataFrame(rows, schema).repartition(n)  # a file per row: something for OPTIMIZE to compact


def _small_expected(ds: str, tag: str, n: int) -> list[str]:
    return sorted(f"{tag}-{ds}-{i}" for i in range(n))


def _small_run(spark, cfg, ds: str, tag: str, n: int, kill_after: int | None = None) -> None:
    """One run of a job writing SMALL_TABLES for ``ds`` (``n`` rows each), killed after commit ``kill_after``."""
    from dynamix_spark import staged_write
    from dynamix_spark.delta_io import RunMetrics
    from schemas.tables import CLEAN_TABLES, QUARANTINE

    commits = {"k": 0}

    def commit(*args, **kwargs):
        v = overwrite_partition(*args, **kwargs)
        commits["k"] += 1
        if commits["k"] == kill_after:
            raise Killed(f"killed after commit {kill_after}")
        return v

    with pytest.MonkeyPatch.context() as m:
        m.setattr(staged_write, "gate", _no_gate)
        m.setattr(staged_write, "overwrite_partition", commit)
        run_id = f"{tag}-{ds}-run"
        with staged_write.StagedWrite(spark, cfg, job="small", run_id=run_id, ds=ds) as stage:
            for t in SMALL_TABLES:
                stage.add(t, _small_rows(spark, t, ds, tag, n), {**CLEAN_TABLES, "quarantine": QUARANTINE}[t])
            stage.commit({"run_id": run_id})
            stage.record_run([RunMetrics(run_id=run_id, job="small", ds=ds)])


def _key(table: str) -> str:
    return "source_file" if table == "quarantine" else "event_id"


def _small_views(spark, lake: str, ds: str) -> dict:
    """What each reader sees of ``ds`` in every small table: the jobs' reader, the documented SQL, training's."""
    from dynamix_spark.ledger import read_published

    lake = str(Path(lake).resolve())
    versions = {}
    if Path(lake, RUN_LEDGER_TABLE).exists():
        versions = {t: spark.sql(f"SELECT max(versions['{t}']) AS v FROM delta.`{lake}/{RUN_LEDGER_TABLE}` "
                                 f"WHERE ds = '{ds}'").first()["v"] for t in SMALL_TABLES}
    out = {}
    for t in SMALL_TABLES:
        k = _key(t)
        out[f"spark.{t}"] = sorted(r[0] for r in read_published(spark, lake, t, [ds]).select(k).collect())
        at = f" VERSION AS OF {versions[t]}" if versions.get(t) is not None else ""
        out[f"sql.{t}"] = sorted(r[0] for r in spark.sql(f"SELECT {k} FROM delta.`{lake}/{t}`{at} WHERE ds = '{ds}'")
                                 .collect())
        files = published_snapshot(f"{lake}/{t}", [ds]).files
        out[f"train.{t}"] = sorted(v for f in files for v in pq.read_table(f.path, columns=[k]).column(k).to_pylist())
    return out


def _all(tag: str, ds: str, n: int) -> dict:
    return {f"{side}.{t}": _small_expected(ds, tag, n) for t in SMALL_TABLES for side in ("spark", "sql", "train")}


@pytest.fixture()
def small_cfg(tmp_path):
    return load_config(ROOT / "conf" / "local.yaml", [
        f"paths.raw_root={tmp_path}/raw", f"paths.lake_root={tmp_path}/lake", "quality.docs_dir=''", "spark.conf={}"])


def test_a_stage_killed_after_each_commit_is_seen_by_no_reader(spark, small_cfg):
    """Old runs of DAY and OTHER; then a new run of DAY killed after commit 1, 2 and 3 in turn (3 tables; after the
    third, all are committed and only the ledger row is missing): every reader sees DAY's old rows each time, OTHER
    untouched; the re-run completes and every reader sees the new rows."""
    lake = small_cfg.paths.lake_root
    _small_run(spark, small_cfg, DAY, "old", 3)
    _small_run(spark, small_cfg, OTHER, "other", 2)  # a later run of another day: new versions, DAY's rows unchanged
    assert _small_views(spark, lake, DAY) == _all("old", DAY, 3)
    for k in (1, 2, 3):
        with pytest.raises(Killed):
            _small_run(spark, small_cfg, DAY, "new", 4, kill_after=k)
        assert _small_views(spark, lake, DAY) == _all("old", DAY, 3), f"after a kill after commit {k}"
    # the plain latest read does see the killed runs' commits (the mixed view the ledger hides)
    latest = {t: sorted(r[0] for r in _latest(spark, lake, t, [DAY]).select(_key(t)).collect()) for t in SMALL_TABLES}
    assert latest == {t: _small_expected(DAY, "new", 4) for t in SMALL_TABLES}
    _small_run(spark, small_cfg, DAY, "new", 4)
    assert _small_views(spark, lake, DAY) == _all("new", DAY, 4)
    assert _small_views(spark, lake, OTHER) == _all("other", OTHER, 2)
    rows = spark.read.format("delta").load(table_path(lake, RUN_LEDGER_TABLE)).collect()
    assert sorted((r["ds"], r["run_id"], sorted(r["versions"].items())) for r in rows) == [
        # each killed run committed one table more than the one before: 3, 2 and 1 versions between the runs
        (DAY, "new-2026-11-02-run", [("clean_ad_impressions", 5), ("clean_conversions", 4), ("quarantine", 3)]),
        (DAY, "old-2026-11-02-run", [(t, 0) for t in sorted(SMALL_TABLES)]),
        (OTHER, "other-2026-11-03-run", [(t, 1) for t in sorted(SMALL_TABLES)])]


def test_published_version_rolls_forward_over_other_days_and_optimize_not_over_a_half_run(spark, small_cfg):
    """The version a reader takes moves past commits that leave the day's rows as they were (another day's run,
    OPTIMIZE: the recorded version's files may be vacuumed after the retention) and stops before one that changes
    them (a run of the day without its ledger row)."""
    from delta.tables import DeltaTable

    from dynamix_spark.ledger import published_versions
    from training.delta_snapshot import latest_version

    lake = small_cfg.paths.lake_root
    ad = f"{Path(lake).resolve()}/clean_ad_impressions"
    _small_run(spark, small_cfg, DAY, "old", 3)   # v0
    _small_run(spark, small_cfg, OTHER, "other", 2)  # v1
    _small_run(spark, small_cfg, DAY, "old", 3)   # v2: DAY again, 3 more files, same rows
    _small_run(spark, small_cfg, OTHER, "other", 2)  # v3
    DeltaTable.forPath(spark, ad).optimize().where(f"ds = '{DAY}'").executeCompaction()  # v4: dataChange false
    assert latest_version(ad) == 4
    assert published_versions(spark, lake, "clean_ad_impressions", [DAY, OTHER]) == {DAY: 4, OTHER: 4}
    assert published_snapshot(ad, [DAY, OTHER]).day_versions == {DAY: 4, OTHER: 4}
    assert len(published_snapshot(ad, [DAY]).files) == 1  # the compacted file, not the recorded version's three
    with pytest.raises(Killed):
        _small_run(spark, small_cfg, DAY, "new", 4, kill_after=1)  # v5 changes DAY, no ledger row
    _small_run(spark, small_cfg, OTHER, "other", 2)  # v6
    assert published_versions(spark, lake, "clean_ad_impressions", [DAY, OTHER]) == {DAY: 4, OTHER: 6}
    assert published_snapshot(ad, [DAY, OTHER]).day_versions == {DAY: 4, OTHER: 6}
    assert _small_views(spark, lake, DAY) == _all("old", DAY, 3)
    # a day no run published (a lake from before the ledger): the latest version
    assert published_versions(spark, lake, "clean_ad_impressions", ["2026-11-09"]) == {"2026-11-09": None}
