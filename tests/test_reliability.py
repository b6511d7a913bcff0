"""Reliability (issue 9): faults, bad input and re-runs lose nothing.

Fast (``bash scripts/test.sh tests/test_reliability.py -m "not slow"``; CI's plain ``bash scripts/test.sh``
skips the slow ones):
- malformed raw input, table-driven: every kind ends in quarantine with a reason, as a counted drop, clean
  (acceptable oddities) or in a clear error naming the file / partition, and raw = clean + quarantined +
  counted drops holds to the row, counted here from the Parquet footers and the written tables;
- configuration errors fail before any Spark work with the key named, for every job's command line.

Slow (``bash scripts/test.sh tests/test_reliability.py -m slow``):
- SIGKILL of a denoise driver (its process group: python and JVM) in the middle of its writes;
- two dates at once (both commit) and the same date twice at once (one result, never duplicates);
- re-running denoise (on the malformed day, and with user_window_stats and build_ebf on the generated one)
  gives the same row multiset in every table written;
- a training run killed after its first checkpoint resumes and finishes with the uninterrupted step count
  (``tests/test_train.py::test_training_sigkill_resumes_to_same_steps``: it runs in the training environment).

docs/RELIABILITY.md lists every fault and input with its expected outcome and the measured counts.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conftest import MID_DS, ROOT, TEST_DATES
from procs import kill_group, popen_group
from dynamix_spark.config import load_config
from dynamix_spark.quality import QualityGateError
from dynamix_spark.raw_io import RawInputError
from schemas import CLEAN_TABLES, clean_table_name
from schemas.raw import RAW_SCHEMAS, RAW_SOURCES

DS = "2026-11-02"
T0 = dt.datetime(2026, 11, 2, 10, 0, 0)
LOCAL = ROOT / "conf" / "local.yaml"
DENOISE_TABLES = tuple(clean_table_name(s) for s in RAW_SOURCES) + ("quarantine",)


def _cfg(raw_root, lake_root, *extra: str):
    return load_config(LOCAL, [f"paths.raw_root={raw_root}", f"paths.lake_root={lake_root}", "spark.conf={}",
                               "quality.docs_dir=\"\"", *extra])


# ---------------------------------------------------------------------------------------------------------
# Raw files written by hand with pyarrow (independently of the Spark code under test)
# ---------------------------------------------------------------------------------------------------------

def _arrow_type(t):
    return {T.StringType: pa.string(), T.LongType: pa.int64(), T.IntegerType: pa.int32(),
            T.TimestampType: pa.timestamp("us")}.get(type(t)) or pa.list_(_arrow_type(t.elementType))


def _arrow_schema(source: str, types: dict | None = None, drop: tuple = (), extra: dict | None = None) -> pa.Schema:
    types = types or {}
    fields = [pa.field(f.name, types.get(f.name, _arrow_type(f.dataType)))
              for f in RAW_SCHEMAS[source].fields if f.name not in drop]
    return pa.schema(fields + [pa.field(k, v) for k, v in (extra or {}).items()])


def _row(source: str, event_id, **over) -> dict:
    base = {"event_id": event_id, "user_id": 1, "event_ts": T0}
    base.update({
        "ad_impressions": {"ad_id": 5, "campaign_id": 1, "advertiser_id": 2, "category_id": 3, "semantic_ids": [1, 2],
                           "surface": "feed", "media_type": "image", "position": 1, "device_type": "ios",
                           "dwell_ms": 3000},
        "conversions": {"ad_id": 5, "conversion_type": "click"},
        "organic_impressions": {"content_id": 7, "dwell_ms": 2000, "media_type": "video", "position": 2},
        "page_impressions": {"page_id": 9, "semantic_ids": [4, 5], "media_type": "text"},
    }[source])
    base.update(over)
    return base


def _write(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _write_good_day(raw_root: Path, ds_dir: str = DS, n: int = 5, marker: bool = True,
                    sources: tuple[str, ...] = RAW_SOURCES) -> None:
    """n valid rows per source (event ids good-<source>#i), and the landing job's _SUCCESS marker."""
    for src in RAW_SOURCES:
        part = raw_root / src / f"ds={ds_dir}"
        part.mkdir(parents=True, exist_ok=True)
        if src in sources:
            rows = [_row(src, f"good-{src}#{i}", user_id=1 + i % 3, event_ts=T0 + dt.timedelta(minutes=i))
                    for i in range(n)]
            _write(part / "good.parquet", rows, _arrow_schema(src))
        if marker:
            (part / "_SUCCESS").write_bytes(b"")


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of malformed (or merely unusual) row-level input, written as its own file <name>.parquet."""
    name: str
    source: str
    rows: tuple  # of dicts of overrides of a valid row (event_id defaults to <name>#<i>)
    expect: dict  # status -> rows: "clean", "q:<reason>", "drop:<reason>"
    types: dict = dataclasses.field(default_factory=dict)  # column -> arrow type in this file
    extra: dict = dataclasses.field(default_factory=dict)  # unexpected extra columns
    zero_bytes: bool = False
    original_contains: str | None = None  # the quarantined row keeps the raw value
    clean_ids: tuple = ()  # clean event ids that do not start with <name># (a converted event_id)

    def frame_rows(self) -> list[dict]:
        out = []
        for i, over in enumerate(self.rows):
            r = _row(self.source, f"{self.name}#{i}")
            r.update(over)
            out.append(r)
        return out


def _ts(*a):
    return dt.datetime(*a)


AD = "ad_impressions"
ROW_KINDS: tuple[Kind, ...] = (
    Kind("null_event_id", AD, ({"event_id": None},), {"q:null_key:event_id": 1}),
    Kind("null_user_id", AD, ({"user_id": None},), {"q:null_key:user_id": 1}),
    Kind("null_event_ts", AD, ({"event_ts": None},), {"q:null_key:event_ts": 1}),
    Kind("user_id_wrong_type_string", AD, ({"user_id": "42"}, {"user_id": "forty-two"}),
         {"clean": 1, "q:unparsable:user_id": 1}, types={"user_id": pa.string()}, original_contains="forty-two"),
    Kind("event_id_wrong_type_long", AD, ({"event_id": 900001},), {"clean": 1}, types={"event_id": pa.int64()},
         clean_ids=("900001",)),
    Kind("event_ts_wrong_type_string", AD, ({"event_ts": "2026-11-02 11:00:00"}, {"event_ts": "half past ten"}),
         {"clean": 1, "q:unparsable:event_ts": 1}, types={"event_ts": pa.string()}, original_contains="half past ten"),
    Kind("dwell_wrong_type_string", AD, ({"dwell_ms": "4000"}, {"dwell_ms": "4s"}),
         {"clean": 1, "q:unparsable:dwell_ms": 1}, types={"dwell_ms": pa.string()}, original_contains="4s"),
    Kind("position_out_of_int_range", AD, ({"position": 2 ** 40},), {"q:unparsable:position": 1},
         types={"position": pa.int64()}, original_contains=str(2 ** 40)),
    Kind("negative_dwell", AD, ({"dwell_ms": -5},), {"q:invalid_dwell": 1}),
    Kind("null_dwell", AD, ({"dwell_ms": None},), {"q:invalid_dwell": 1}),
    Kind("zero_dwell", AD, ({"dwell_ms": 0},), {"drop:dwell_below_min": 1}),
    Kind("absurd_dwell", AD, ({"dwell_ms": 10 ** 13},), {"drop:dwell_above_max": 1}),  # 317 years
    Kind("ts_before_day", AD, ({"event_ts": _ts(2026, 11, 1, 20)},), {"q:ts_outside_partition": 1}),
    Kind("ts_after_day", AD, ({"event_ts": _ts(2026, 11, 3, 5)},), {"q:ts_outside_partition": 1}),
    Kind("ts_in_future", AD, ({"event_ts": _ts(2099, 1, 1)},), {"q:ts_outside_partition": 1}),
    Kind("ts_epoch_zero", AD, ({"event_ts": _ts(1970, 1, 1)},), {"q:ts_outside_partition": 1}),
    Kind("duplicate_same_content", AD, ({"event_id": "duplicate_same_content#d"}, {},
                                        {"event_id": "duplicate_same_content#d"}),
         {"clean": 2, "drop:duplicate": 1}),
    Kind("duplicate_different_content", AD, ({"event_id": "duplicate_different_content#0", "dwell_ms": 1000},
                                             {"event_id": "duplicate_different_content#0", "dwell_ms": 9000,
                                              "event_ts": T0 + dt.timedelta(seconds=5)}),
         {"clean": 1, "q:duplicate_conflict": 1}, original_contains="9000"),
    Kind("unexpected_extra_columns", AD, ({"debug_note": "x", "score": 0.5}, {"debug_note": None, "score": None}),
         {"clean": 2}, extra={"debug_note": pa.string(), "score": pa.float64()}),
    Kind("unicode_strings", AD, ({"event_id": "unicode_strings#é-日本-🚀", "surface": "flux-é-日本-🚀",
                                  "media_type": "صورة", "device_type": "ios\u200b\u0000"},),
         {"clean": 1}),
    Kind("zero_byte_file", AD, (), {}, zero_bytes=True),
    Kind("parquet_with_zero_rows", AD, (), {}),
    Kind("conversion_null_user_id", "conversions", ({"user_id": None},), {"q:null_key:user_id": 1}),
    Kind("conversion_unknown_type_and_null_ad", "conversions", ({"conversion_type": "teleport"}, {"ad_id": None}),
         {"clean": 2}),  # conversion_type_known is a warning; ad_id is nullable
    Kind("conversion_duplicate_different_content", "conversions",
         ({"event_id": "conversion_duplicate_different_content#0", "conversion_type": "click"},
          {"event_id": "conversion_duplicate_different_content#0", "conversion_type": "purchase"}),
         {"clean": 1, "q:duplicate_conflict": 1}),
    Kind("organic_negative_dwell", "organic_impressions", ({"dwell_ms": -1},), {"q:invalid_dwell": 1}),
    Kind("organic_absurd_dwell", "organic_impressions", ({"dwell_ms": 2 ** 62},), {"drop:dwell_above_max": 1}),
    Kind("page_ts_outside_day", "page_impressions", ({"event_ts": _ts(2026, 10, 30)},),
         {"q:ts_outside_partition": 1}),
    Kind("page_null_event_id", "page_impressions", ({"event_id": None},), {"q:null_key:event_id": 1}),
)


def _write_kind(raw_root: Path, k: Kind) -> Path:
    path = raw_root / k.source / f"ds={DS}" / f"{k.name}.parquet"
    if k.zero_bytes:
        path.write_bytes(b"")
    else:
        _write(path, k.frame_rows(), _arrow_schema(k.source, k.types, extra=k.extra))
    return path


@pytest.fixture(scope="module")
def malformed_day(spark, tmp_path_factory):
    """One day with a good file per source and one file per row-level kind, denoised once into a fresh lake."""
    from jobs import denoise

    root = tmp_path_factory.mktemp("malformed")
    raw, lake = root / "raw", root / "lake"
    _write_good_day(raw)
    for k in ROW_KINDS:
        _write_kind(raw, k)
    cfg = _cfg(raw, lake)
    outcomes = denoise.run(spark, cfg, DS)
    tables = {t: spark.read.format("delta").load(str(lake / t)).where(F.col("ds") == DS) for t in DENOISE_TABLES}
    clean_ids = {src: [r[0] for r in tables[clean_table_name(src)].select("event_id").collect()] for src in RAW_SOURCES}
    q_rows = [r.asDict() for r in tables["quarantine"].collect()]
    metrics = {r["source"]: r.asDict() for r in spark.read.format("delta").load(str(lake / "run_metrics"))
               .where((F.col("ds") == DS) & (F.col("job") == "denoise")).collect()}
    return {"raw": raw, "lake": lake, "cfg": cfg, "outcomes": outcomes, "clean_ids": clean_ids, "q": q_rows,
            "metrics": metrics, "tables": tables}


def _footer_rows(path: Path) -> int:
    return 0 if path.stat().st_size == 0 else pq.ParquetFile(path).metadata.num_rows


def _observed(day: dict, k: Kind) -> Counter:
    """The kind's rows as found in the written tables: clean (by event_id), quarantined (by source file), and
    the rest of the file's rows, which can only be counted drops."""
    n = _footer_rows(day["raw"] / k.source / f"ds={DS}" / f"{k.name}.parquet")
    clean = sum(1 for e in day["clean_ids"][k.source]
                if e is not None and (e.startswith(k.name + "#") or e in k.clean_ids))
    q = Counter(f"q:{r['reason']}" for r in day["q"]
                if r["source"] == k.source and r["source_file"].endswith(f"/{k.name}.parquet"))
    out = Counter({"clean": clean}) + q
    rest = n - clean - sum(q.values())
    if rest:
        out["drop:*"] = rest
    return out


@pytest.mark.parametrize("kind", ROW_KINDS, ids=[k.name for k in ROW_KINDS])
def test_row_level_input_outcome(malformed_day, kind: Kind):
    got = _observed(malformed_day, kind)
    drops = sum(v for s, v in kind.expect.items() if s.startswith("drop:"))
    want = Counter({s: v for s, v in kind.expect.items() if not s.startswith("drop:")})
    if drops:
        want["drop:*"] = drops
    assert +got == +want, (kind.name, dict(got))
    n_raw = _footer_rows(malformed_day["raw"] / kind.source / f"ds={DS}" / f"{kind.name}.parquet")
    assert n_raw == sum(kind.expect.values())  # every row of the file is accounted for
    if kind.original_contains:
        originals = [r["original_row"] for r in malformed_day["q"]
                     if r["source_file"].endswith(f"/{kind.name}.parquet")]
        assert originals and any(kind.original_contains in o for o in originals), originals
    if kind.name == "unicode_strings":
        row = malformed_day["tables"][clean_table_name(AD)].where(F.col("event_id") == kind.rows[0]["event_id"]).first()
        assert (row["surface"], row["media_type"], row["device_type"]) == \
            (kind.rows[0]["surface"], kind.rows[0]["media_type"], kind.rows[0]["device_type"])
    if kind.name == "unexpected_extra_columns":
        assert malformed_day["tables"][clean_table_name(AD)].columns == CLEAN_TABLES[clean_table_name(AD)].fieldNames()


def test_malformed_day_reconciles_to_the_row(malformed_day):
    """raw (Parquet footers) = clean + quarantined (written tables) + counted drops (run_metrics), per source,
    and the drops by reason are exactly those the kinds call for."""
    day = malformed_day
    for src in RAW_SOURCES:
        part = day["raw"] / src / f"ds={DS}"
        raw = sum(_footer_rows(f) for f in part.glob("*.parquet"))
        clean = len(day["clean_ids"][src])
        quarantined = sum(1 for r in day["q"] if r["source"] == src)
        m = day["metrics"][src]
        drops = sum(m["drops"].values())
        assert raw == clean + quarantined + drops, (src, raw, clean, quarantined, m["drops"])
        assert (m["rows_in"], m["rows_out"], m["rows_quarantined"]) == (raw, clean, quarantined)
        want_drops = Counter()
        want_q = Counter()
        for k in ROW_KINDS:
            if k.source == src:
                want_drops.update({s[5:]: v for s, v in k.expect.items() if s.startswith("drop:")})
                want_q.update({s[2:]: v for s, v in k.expect.items() if s.startswith("q:")})
        assert dict(m["drops"]) == dict(want_drops), src
        assert dict(m["quarantined"]) == dict(want_q), src
        assert clean == 5 + sum(k.expect.get("clean", 0) for k in ROW_KINDS if k.source == src)


# File- and day-level faults: each fails the run with an error naming the file (or partition) and nothing is
# written. (name, how to break a good day, error type, what the message must contain)
def _corrupt(raw):
    (raw / AD / f"ds={DS}" / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    return "corrupt.parquet"


def _truncated(raw):
    good = raw / AD / f"ds={DS}" / "good.parquet"
    data = good.read_bytes()
    (raw / AD / f"ds={DS}" / "truncated.parquet").write_bytes(data[: len(data) // 2])
    return "truncated.parquet"


def _missing_column(raw):
    _write(raw / AD / f"ds={DS}" / "no-dwell.parquet",
           [{k: v for k, v in _row(AD, "x").items() if k != "dwell_ms"}], _arrow_schema(AD, drop=("dwell_ms",)))
    return r"no-dwell\.parquet.*dwell_ms"


def _missing_key_column(raw):
    src = "conversions"
    _write(raw / src / f"ds={DS}" / "no-user.parquet",
           [{k: v for k, v in _row(src, "x").items() if k != "user_id"}], _arrow_schema(src, drop=("user_id",)))
    return r"no-user\.parquet.*user_id"


def _uncastable_type(raw):
    schema = _arrow_schema(AD, {"user_id": pa.struct([("id", pa.int64())])})
    _write(raw / AD / f"ds={DS}" / "struct-user.parquet", [_row(AD, "x", user_id={"id": 1})], schema)
    return r"struct-user\.parquet"


def _missing_partition(raw):
    # A required source's partition (paths.required_sources). Organic and page impressions are optional since
    # issue 15: without their folder the day completes (tests/test_optional_sources.py).
    shutil.rmtree(raw / "conversions" / f"ds={DS}")
    return rf"conversions/ds={DS}"


def _missing_marker(raw):
    (raw / "page_impressions" / f"ds={DS}" / "_SUCCESS").unlink()
    return rf"page_impressions/ds={DS}.*_SUCCESS"


def _empty_day(raw):
    for src in RAW_SOURCES:
        (raw / src / f"ds={DS}" / "good.parquet").unlink()
        _write(raw / src / f"ds={DS}" / "empty.parquet", [], _arrow_schema(src))
    return r"clean_ad_impressions ds=2026-11-02: expectation row_count_positive"


def _only_conversions(raw):
    for src in RAW_SOURCES:
        if src != "conversions":
            (raw / src / f"ds={DS}" / "good.parquet").unlink()
    return r"clean_ad_impressions ds=2026-11-02: expectation row_count_positive"


FILE_KINDS = (
    ("corrupt_parquet", _corrupt, RawInputError),
    ("truncated_parquet", _truncated, RawInputError),
    ("missing_required_column", _missing_column, RawInputError),
    ("missing_key_column", _missing_key_column, RawInputError),
    ("uncastable_column_type", _uncastable_type, RawInputError),
    ("missing_partition", _missing_partition, RawInputError),
    ("missing_ready_marker", _missing_marker, RawInputError),
    ("empty_day", _empty_day, QualityGateError),
    ("only_conversions", _only_conversions, QualityGateError),
)


def _versions(spark, lake: Path) -> dict[str, int]:
    from delta.tables import DeltaTable

    out = {}
    for t in sorted(p.name for p in lake.iterdir() if (p / "_delta_log").is_dir()):
        out[t] = DeltaTable.forPath(spark, str(lake / t)).history(1).select("version").first()[0]
    return out


@pytest.mark.parametrize("name, breaker, error", FILE_KINDS, ids=[k[0] for k in FILE_KINDS])
def test_file_and_day_level_faults_fail_clearly_and_write_nothing(spark, malformed_day, tmp_path, name, breaker, error):
    """A good day broken one way, denoised into the malformed-day lake: the error names the file or partition
    (or, for a day without rows, the table and expectation) and no table gets a new version."""
    from jobs import denoise

    raw = tmp_path / "raw"
    _write_good_day(raw)
    pattern = breaker(raw)
    lake = malformed_day["lake"]
    before = _versions(spark, lake)
    raw_files = _tree(raw)
    with pytest.raises(error, match=pattern):
        denoise.run(spark, dataclasses.replace(malformed_day["cfg"], paths=dataclasses.replace(
            malformed_day["cfg"].paths, raw_root=str(raw))), DS)
    after = _versions(spark, lake)
    # quality_results records a blocked gate's evidence (an append); every published table is untouched
    after.pop("quality_results", None), before.pop("quality_results", None)
    assert after == before
    # the raw input is all still there, unchanged, for a re-run once fixed: nothing was consumed or moved
    assert _tree(raw) == raw_files


def _tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


# ---------------------------------------------------------------------------------------------------------
# Configuration errors: every job's command line, before any Spark work, naming the key
# ---------------------------------------------------------------------------------------------------------

CONFIG_ERRORS = (
    ("unknown_key", "stats.horizon_typo=5", "stats:\n  horizon_typo: 5\n", "stats.horizon_typo"),
    ("wrong_type", "stats.forecast_horizon_s=abc", "stats:\n  forecast_horizon_s: abc\n", "stats.forecast_horizon_s"),
    ("epsilon_out_of_range", "segmentation.epsilon=-0.5", "segmentation:\n  epsilon: -0.5\n", "segmentation.epsilon"),
    ("window_shorter_than_horizon", "stats.window_length_s=120", "stats:\n  window_length_s: 120\n",
     "stats.window_length_s"),
)
JOBS = ("denoise", "user_window_stats", "build_ebf", "nightly")


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("how", ("override", "yaml"))
@pytest.mark.parametrize("kind, override, yaml_text, key", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_error_fails_before_spark_naming_the_key(monkeypatch, capsys, tmp_path, job, how, kind, override,
                                                        yaml_text, key):
    import importlib

    mod = importlib.import_module(f"jobs.{job}")

    def no_spark(*a, **k):
        raise AssertionError("Spark was started despite a configuration error")

    monkeypatch.setattr(mod, "build_spark", no_spark)
    if how == "override":
        argv = ["--config", str(LOCAL), "--ds", DS, "--set", override]
    else:
        import yaml

        bad = tmp_path / "bad.yaml"  # the local profile with the bad value merged in

        data = yaml.safe_load(LOCAL.read_text())
        for section, values in yaml.safe_load(yaml_text).items():
            data.setdefault(section, {}).update(values)
        bad.write_text(yaml.safe_dump(data))
        argv = ["--config", str(bad), "--ds", DS]
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "config error" in err and key in err, err


# ---------------------------------------------------------------------------------------------------------
# Re-runs give the same content
# ---------------------------------------------------------------------------------------------------------

def _multiset(df, drop: tuple[str, ...] = ()) -> Counter:
    """Rows as a multiset of hashable tuples (arrays -> tuples, maps -> sorted tuples)."""
    def h(v):
        if isinstance(v, list):
            return tuple(h(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((k, h(x)) for k, x in v.items()))
        if isinstance(v, T.Row):
            return tuple(h(x) for x in v)
        return v
    cols = [c for c in df.columns if c not in drop]
    return Counter(tuple(h(v) for v in r) for r in df.select(*cols).collect())


def _table_content(spark, lake, table: str, ds: str | None = None) -> Counter:
    df = spark.read.format("delta").load(f"{lake}/{table}")
    if ds:
        df = df.where(F.col("ds") == ds)
    return _multiset(df, drop=("run_id",) if table == "quarantine" else ())


@pytest.mark.slow  # a second full denoise run (2.5 min on the loaded 2-core machine); CI has test_denoise's re-run
def test_rerun_denoise_same_row_multiset_every_table(spark, malformed_day):
    """Re-running denoise for the malformed day: every table it writes holds the same row multiset
    (quarantine without its run_id), and run_metrics gets a second set of rows with the same counts."""
    from jobs import denoise

    lake = malformed_day["lake"]
    first = {t: _table_content(spark, lake, t) for t in DENOISE_TABLES}
    assert sum(first["clean_ad_impressions"].values()) > 0 and sum(first["quarantine"].values()) > 0
    denoise.run(spark, malformed_day["cfg"], DS)
    for t in DENOISE_TABLES:
        assert _table_content(spark, lake, t) == first[t], t
    runs = spark.read.format("delta").load(str(lake / "run_metrics")).where(F.col("job") == "denoise").collect()
    by_run = {}
    for r in runs:
        by_run.setdefault(r["run_id"], {})[r["source"]] = (r["rows_in"], r["rows_out"], r["rows_quarantined"],
                                                           tuple(sorted(r["drops"].items())))
    assert len(by_run) == 2 and len(set(map(lambda d: tuple(sorted(d.items())), by_run.values()))) == 1


@pytest.mark.slow
def test_rerun_every_job_same_row_multiset(spark, tiny_cfg, tiny_pipeline):
    """denoise, user_window_stats and build_ebf re-run for the middle day of the generated dataset."""
    from jobs import build_ebf, denoise, user_window_stats

    lake = tiny_cfg.paths.lake_root
    build_ebf.run(spark, tiny_cfg, MID_DS)
    tables = DENOISE_TABLES + ("user_window_stats", "user_segments", "ebf_examples")
    first = {t: _table_content(spark, lake, t, MID_DS) for t in tables}
    assert all(sum(c.values()) > 0 for c in first.values())
    denoise.run(spark, tiny_cfg, MID_DS)
    user_window_stats.run(spark, tiny_cfg, MID_DS)
    build_ebf.run(spark, tiny_cfg, MID_DS)
    for t in tables:
        assert _table_content(spark, lake, t, MID_DS) == first[t], t


# ---------------------------------------------------------------------------------------------------------
# Killed drivers and concurrent runs (subprocesses with their own JVM)
# ---------------------------------------------------------------------------------------------------------

SUB_SPARK_CONF = json.dumps({"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "1g",
                             "spark.ui.enabled": "false"})


def _job_cmd(job: str, raw_root, lake, ds: str) -> list[str]:
    return [sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--config", str(LOCAL), "--ds", ds,
            "--set", f"paths.raw_root={raw_root}", "--set", f"paths.lake_root={lake}",
            "--set", f"spark.conf={SUB_SPARK_CONF}", "--set", "quality.docs_dir=\"\""]


@pytest.fixture(scope="module")
def ref_lake(spark, tiny_cfg, tiny_pipeline, tmp_path_factory):
    """The uninterrupted reference: the generated dataset's lake, denoised day by day (tiny_pipeline); and a
    seed lake holding only the first day, i.e. the denoise tables at their version 0 (copied, later commits
    left out), which the fault tests copy and then write the other days into."""
    root = tmp_path_factory.mktemp("reliability_ref")
    ref, seed = Path(tiny_cfg.paths.lake_root), root / "seed"
    for t in DENOISE_TABLES:
        shutil.copytree(ref / t, seed / t, ignore=lambda d, names: [
            n for n in names if Path(d).name == "_delta_log" and n != f"{0:020d}.json"])
    for t in DENOISE_TABLES:
        assert not _table_content(spark, seed, t, MID_DS) and _table_content(spark, seed, t, TEST_DATES[0]) == \
            _table_content(spark, ref, t, TEST_DATES[0]), t
    return {"raw": tiny_cfg.paths.raw_root, "seed": seed, "ref": ref, "root": root}


def _delta_versions_files(lake: Path) -> dict[str, int]:
    return {t: max(int(p.stem) for p in (lake / t / "_delta_log").glob("*.json")) for t in DENOISE_TABLES}


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ("first_data_file", "first_commit"))
def test_sigkill_mid_write_leaves_tables_readable_and_rerun_completes(spark, ref_lake, tmp_path, kill_at):
    from jobs import denoise

    lake = tmp_path / "lake"
    shutil.copytree(ref_lake["seed"], lake)
    ds = MID_DS
    before = _delta_versions_files(lake)
    p = popen_group(_job_cmd("denoise", ref_lake["raw"], lake, ds), tmp_path / "killed.log")
    deadline = time.time() + 540
    killed_after = None
    try:
        while time.time() < deadline and p.poll() is None:
            if kill_at == "first_data_file":
                hit = any((lake / t / f"ds={ds}").is_dir() and any((lake / t / f"ds={ds}").glob("*.parquet"))
                          for t in DENOISE_TABLES)
            else:
                hit = any(v > before[t] for t, v in _delta_versions_files(lake).items())
            if hit:
                killed_after = kill_at
                break
            time.sleep(0.02)
    finally:
        kill_group(p)
    assert killed_after, "the job ended before the kill:\n" + (tmp_path / "killed.log").read_text()[-3000:]
    # Every table reads fresh (a new session's view: fresh DataFrames over the log), at the previous version
    # or the new one, never a part of the new day.
    ref_day = {t: _table_content(spark, ref_lake["ref"], t, ds) for t in DENOISE_TABLES}
    after = _delta_versions_files(lake)
    states = {}
    for t in DENOISE_TABLES:
        content = _table_content(spark, lake, t, ds)
        assert after[t] in (before[t], before[t] + 1), (t, before[t], after[t])
        if after[t] == before[t]:
            assert not content, t
            states[t] = "previous"
        else:
            assert content == ref_day[t], t
            states[t] = "new"
        day1 = TEST_DATES[0]
        assert _table_content(spark, lake, t, day1) == _table_content(spark, ref_lake["seed"], t, day1), t
    print(f"after SIGKILL at {kill_at}: {states}")
    # Re-running the day completes with the content of the uninterrupted run, in every table.
    denoise.run(spark, _cfg(ref_lake["raw"], lake), ds)
    for t in DENOISE_TABLES:
        assert _table_content(spark, lake, t) == _partial_ref(spark, ref_lake, t, (TEST_DATES[0], ds)), t


def _partial_ref(spark, ref_lake, table: str, days) -> Counter:
    c = Counter()
    for ds in days:
        c += _table_content(spark, ref_lake["ref"], table, ds)
    return c


def _concurrent_error(log: str) -> bool:
    return any(s in log for s in ("ConcurrentAppendException", "ConcurrentDeleteReadException",
                                   "ConcurrentDeleteDeleteException", "ConcurrentWriteException",
                                   "MetadataChangedException", "ProtocolChangedException",
                                   "ConcurrentTransactionException", "DELTA_CONCURRENT"))


def _run_together(cmds: dict[str, list[str]], logdir: Path) -> tuple[dict[str, int], dict[str, str]]:
    procs = {name: popen_group(cmd, logdir / f"{name}.log") for name, cmd in cmds.items()}
    try:
        rcs = {name: p.wait(timeout=900) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                kill_group(p)
    return rcs, {name: (logdir / f"{name}.log").read_text() for name in cmds}


@pytest.mark.slow
def test_concurrent_runs_of_two_dates_both_commit(spark, ref_lake, tmp_path):
    """Disjoint replaceWhere predicates (ds = day 2, ds = day 3) on the same tables, at the same time."""
    lake = tmp_path / "lake"
    shutil.copytree(ref_lake["seed"], lake)
    days = TEST_DATES[1:]
    rcs, logs = _run_together({ds: _job_cmd("denoise", ref_lake["raw"], lake, ds) for ds in days}, tmp_path)
    print("exit codes:", rcs)
    for ds in days:
        assert rcs[ds] == 0, logs[ds][-4000:]
    for t in DENOISE_TABLES:
        assert _table_content(spark, lake, t) == _partial_ref(spark, ref_lake, t, TEST_DATES), t


@pytest.mark.slow
def test_concurrent_runs_of_the_same_date_one_result_never_duplicates(spark, ref_lake, tmp_path):
    """The same date twice at once: at least one run succeeds; a failed one fails with Delta's concurrency
    error; the day's partitions hold exactly the uninterrupted content (no duplicates); a retry of the failed
    run then succeeds with the same content."""
    from jobs import denoise

    lake = tmp_path / "lake"
    shutil.copytree(ref_lake["seed"], lake)
    rcs, logs = _run_together({f"run{i}": _job_cmd("denoise", ref_lake["raw"], lake, MID_DS) for i in (1, 2)},
                              tmp_path)
    print("exit codes:", rcs)
    assert 0 in rcs.values(), {k: v[-3000:] for k, v in logs.items()}
    for name, rc in rcs.items():
        if rc != 0:
            assert _concurrent_error(logs[name]), logs[name][-4000:]
            print(name, "failed with:", [ln[:300] for ln in logs[name].splitlines() if "Exception:" in ln][-1:])
    expected = {t: _partial_ref(spark, ref_lake, t, (TEST_DATES[0], MID_DS)) for t in DENOISE_TABLES}
    for t in DENOISE_TABLES:
        assert _table_content(spark, lake, t) == expected[t], t
    if any(rc != 0 for rc in rcs.values()):  # the retry the scheduler would do
        denoise.run(spark, _cfg(ref_lake["raw"], lake), MID_DS)
        for t in DENOISE_TABLES:
            assert _table_content(spark, lake, t) == expected[t], t


# The training kill / resume test is in tests/test_train.py (the training environment: torch, no PySpark).
