"""The JVM-free Delta snapshot and the Petastorm loader against a small real ``ebf_examples``-shaped table.

The table (policy ``remove_passive``: segment 0 gets ``ad_reduced``, so its four low-importance ad sequence
columns are null; organic/page are null everywhere), written with delta-spark:

- v0: set A, 10 rows per (ds, segment) for two days, one file per partition, plus 3 ``baseline`` rows;
- v1: ALTER TABLE sets ``delta.checkpointInterval = 1``: Delta writes a checkpoint at v1;
- v2: ALTER TABLE sets it back to 100 (no more checkpoints);
- v3: ``replaceWhere ds = D2`` with set C, 8 rows per segment: A's D2 files stay in the folder, removed in
  the log after the checkpoint.

Expected rows are the Python rows the test wrote (``tests/seam_data.py``); row counts, steps and leftovers
are worked out by hand in the comments. This is a training-side test (no PySpark in its environment): the
table is written, and ``inputFiles()`` asked, by delta-spark in the Spark environment through
``tests/seam_spark.py``.
"""
from __future__ import annotations

import collections
import json
import os
from urllib.parse import unquote, urlparse

import pytest
import torch

from dynamix_spark.config import EbfConfig
from schemas.ebf import EBF_SOURCES, TARGET_COLUMNS, seq_col
from seam_data import BASELINE, D1, D2, N, POLICY, REMOVED, SET_A, SET_C, SPECIAL
from seam_spark import spark_steps
from training.delta_snapshot import DeltaLogError, UnsupportedDeltaFeature, latest_version, load_snapshot
from training.loader import EbfLoader, column_to_numpy, plan_shards, stride_phase

EBF = EbfConfig(seq_len={"ad": N, "organic": N, "page": N})


def _key(r: dict) -> tuple[int, int, int]:
    return (r["user_id"], r["event_ts_us"], r["label"])


def _write(rows: list[dict], path: str, mode: str = "append", where: str | None = None) -> dict:
    return {"op": "write_ebf", "rows": rows, "path": path, "mode": mode, "where": where, "coalesce": 1}


@pytest.fixture(scope="module")
def seam(tmp_path_factory):
    """The table written by delta-spark (in the Spark environment), and its inputFiles() at v0 and v3."""
    path = str(tmp_path_factory.mktemp("ebf") / "ebf_examples")
    steps = [_write(SET_A + BASELINE, path)]
    for interval in (1, 100):
        steps.append({"op": "sql", "query": f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
                      f"('delta.checkpointInterval' = '{interval}', 'delta.checkpoint.writeStatsAsStruct' = 'false')"})
    steps.append(_write(SET_C, path, mode="overwrite", where=f"ds = '{D2}'"))
    steps += [{"op": "input_files", "path": path, "version": v} for v in (0, 3)]
    out = spark_steps(steps)
    return path, {0: out[-2], 3: out[-1]}


@pytest.fixture(scope="module")
def table(seam):
    return seam[0]


def _spark_files(seam, version: int) -> set[str]:
    files = seam[1][version]
    return {os.path.normpath(unquote(urlparse(f).path)) for f in files}


def test_snapshot_matches_delta_spark(seam, table):
    assert latest_version(table) == 3
    assert os.path.exists(os.path.join(table, "_delta_log", "00000000000000000001.checkpoint.parquet"))
    on_disk = {os.path.join(d, f) for d, _, fs in os.walk(table) if "_delta_log" not in d
               for f in fs if f.endswith(".parquet")}
    expected_checkpoint = {0: None, 3: 1}
    for v in (0, 3):
        snap = load_snapshot(table, v)
        mine = {f.path for f in snap.files}
        assert mine == _spark_files(seam, v), v
        assert snap.checkpoint_version == expected_checkpoint[v]
    # v3 dropped A's D2 files (segments 0 and 1 of remove_passive): they are still in the folder
    removed = {f.path for f in load_snapshot(table, 0).files} - {f.path for f in load_snapshot(table, 3).files}
    assert len(removed) == 2 and removed <= on_disk
    snap3 = load_snapshot(table, 3)
    assert snap3.partition_types == {"ds": "string", "policy": "string", "segment": "integer"}
    counts = collections.Counter((f.partition_values["ds"], f.partition_values["policy"],
                                  f.partition_values["segment"]) for f in snap3.files)
    assert counts[(D1, POLICY, "1")] == 1 and counts[(D2, POLICY, "1")] == 1 and counts[(D1, "baseline", "0")] == 1
    # numRecords from the stats: 10 (A, D1) + 8 (C) rows of segment 1 at v3
    assert sum(f.num_records for f in snap3.files if f.partition_values["segment"] == "1") == 18
    with pytest.raises(DeltaLogError, match="does not exist"):
        load_snapshot(table, 4)


def test_snapshot_matches_deltalake_when_installed(seam, table):
    """delta-rs (the optional ``deltalake`` package, not in requirements-train.lock; README "Training")
    agrees with delta-spark's file list and with the log replay's record counts, where it is installed."""
    deltalake = pytest.importorskip("deltalake")
    for v in (0, 3):
        dt = deltalake.DeltaTable(table, version=v)
        uris = {os.path.normpath(unquote(urlparse(u).path)) if "://" in u else os.path.normpath(u)
                for u in dt.file_uris()}
        assert uris == _spark_files(seam, v), v
        adds = dt.get_add_actions(flatten=True)
        records = dict(zip(adds.column("path").to_pylist(), adds.column("num_records").to_pylist()))
        snap = load_snapshot(table, v)
        assert sum(records.values()) == sum(f.num_records for f in snap.files), v


def _write_log(root, actions: list[dict]) -> str:
    log = root / "_delta_log"
    log.mkdir(parents=True)
    (log / f"{0:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    return str(root)


def _meta(conf: dict) -> dict:
    schema = {"type": "struct", "fields": [{"name": "x", "type": "long", "nullable": True, "metadata": {}}]}
    return {"metaData": {"id": "t", "format": {"provider": "parquet", "options": {}},
                         "schemaString": json.dumps(schema), "partitionColumns": [], "configuration": conf}}


def test_snapshot_refuses_deletion_vectors_and_column_mapping(tmp_path):
    dv = {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@<k]", "offset": 1, "sizeInBytes": 36,
          "cardinality": 2}
    proto = {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["deletionVectors"],
                          "writerFeatures": ["deletionVectors"]}}
    add = {"path": "a.parquet", "partitionValues": {}, "size": 1, "modificationTime": 0, "dataChange": True}
    ok = _write_log(tmp_path / "ok", [proto, _meta({}), {"add": add}])
    assert [os.path.basename(f.path) for f in load_snapshot(ok).files] == ["a.parquet"]
    with_dv = _write_log(tmp_path / "dv", [proto, _meta({}), {"add": {**add, "deletionVector": dv}}])
    with pytest.raises(UnsupportedDeltaFeature, match="deletion vectors"):
        load_snapshot(with_dv)
    mapped = _write_log(tmp_path / "cm", [{"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}},
                                          _meta({"delta.columnMapping.mode": "name"}), {"add": add}])
    with pytest.raises(UnsupportedDeltaFeature, match="column mapping"):
        load_snapshot(mapped)


def _read_all(loader: EbfLoader, epoch: int = 0) -> list:
    loader.set_epoch(epoch)
    return list(loader)


def _expected(rows: list[dict], segment: int | None = None, days=(D1, D2)) -> collections.Counter:
    return collections.Counter(_key(r) for r in rows if r["policy"] == POLICY and r["ds"] in days
                               and (segment is None or r["segment"] == segment))


def _got(batches) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for b in batches:
        c.update(zip(b.meta["user_id"].tolist(), b.meta["event_ts_us"].tolist(), b.label.long().tolist()))
    return c


def test_loader_reads_exactly_the_pinned_version(table):
    # v0: per segment 10 + 10 rows (A) -> 10 batches of 2; v3: 10 (A, D1) + 8 (C) = 18 -> 9
    old = EbfLoader(table, 0, POLICY, [D1, D2], EBF, batch_size=2, seed=1, workers=2, shuffle_buffer=5)
    new = EbfLoader(table, 3, POLICY, [D1, D2], EBF, batch_size=2, seed=1, workers=2, shuffle_buffer=5)
    assert (old.steps_per_epoch, new.steps_per_epoch) == (20, 18)
    got_old, got_new = _read_all(old), _read_all(new)
    assert len(got_old) == 20 and len(got_new) == 18
    assert _got(got_old) == _expected(SET_A)
    assert _got(got_new) == _expected([r for r in SET_A if r["ds"] == D1] + SET_C)
    assert new.describe()["rows"] == 36 and new.describe()["files"] == 4 and new.describe()["version"] == 3


def _ledger(lake: str, ds: str, version: int) -> dict:
    return {"op": "ledger", "lake": lake, "run_id": f"build-{ds}-{version}", "job": "build_ebf", "ds": ds,
            "versions": {"ebf_examples": version}}


def test_loader_default_reads_each_day_as_its_last_published_run(tmp_path):
    """Issue 15: without a version the loader takes each day at the version the run ledger recorded for it. Two
    lakes written by delta-spark: v0 = set A on D1 and D2, published for both days; v1 = D2 replaced by set C by a
    build killed before its ledger row (lake 1) or published (lake 2)."""
    lakes = [str(tmp_path / name) for name in ("killed", "published")]
    steps = []
    for lake in lakes:
        path = f"{lake}/ebf_examples"
        steps += [_write(SET_A, path), _ledger(lake, D1, 0), _ledger(lake, D2, 0),
                  _write(SET_C, path, mode="overwrite", where=f"ds = '{D2}'")]
    steps.append(_ledger(lakes[1], D2, 1))
    spark_steps(steps)
    killed, published = (EbfLoader(f"{lake}/ebf_examples", None, POLICY, [D1, D2], EBF, batch_size=2, seed=1,
                                   workers=2, shuffle_buffer=5) for lake in lakes)
    # D1 moves on to v1 (its rows are the same there: v1 touched D2 only); D2 stays at the published v0
    assert killed.snapshot.day_versions == {D1: 1, D2: 0} and killed.describe()["day_versions"] == {D1: 1, D2: 0}
    assert _got(_read_all(killed)) == _expected(SET_A)  # the whole old run, not the killed build's D2
    assert published.snapshot.day_versions == {D1: 1, D2: 1}
    assert _got(_read_all(published)) == _expected([r for r in SET_A if r["ds"] == D1] + SET_C)
    # a pinned version is read as it is (the killed build's D2 included), and a lake without a ledger at the latest
    pinned = EbfLoader(f"{lakes[0]}/ebf_examples", 1, POLICY, [D1, D2], EBF, batch_size=2, seed=1, workers=2,
                       shuffle_buffer=5)
    assert _got(_read_all(pinned)) == _expected([r for r in SET_A if r["ds"] == D1] + SET_C)


def test_eval_mode_reads_every_row_once(table):
    # v3, 18 rows per segment, B=4: 4 full batches and one of 2 per segment
    loader = EbfLoader(table, 3, POLICY, [D1, D2], EBF, batch_size=4, shuffle=False, drop_last=False)
    out = list(loader)
    assert loader.steps_per_epoch == 10 and len(out) == 10
    assert sorted(len(b) for b in out) == [2, 2] + [4] * 8
    assert _got(out) == _expected([r for r in SET_A if r["ds"] == D1] + SET_C)
    with pytest.raises(ValueError, match="drop_last"):
        EbfLoader(table, 3, POLICY, [D1], EBF, shard_count=2, drop_last=False)


def test_batches_are_homogeneous_and_hold_the_written_values(table):
    loader = EbfLoader(table, 3, POLICY, [D1, D2], EBF, batch_size=2, seed=3, workers=1, shuffle_buffer=3)
    segment_of = {r["user_id"]: r["segment"] for r in SET_A + SET_C}
    all_ad = {seq_col("ad", a) for a in EBF_SOURCES["ad"]}
    found = 0
    for b in loader:
        assert b.policy == POLICY and len(b) == 2
        assert {segment_of[u] for u in b.meta["user_id"].tolist()} == {b.segment}
        assert set(b.seqs) == (all_ad - REMOVED if b.segment == 0 else all_ad)
        assert set(b.lengths) == {"ad"} and set(b.targets) == set(TARGET_COLUMNS)
        for t in (*b.seqs.values(), *b.targets.values(), *b.lengths.values(), *b.meta.values()):
            assert t.dtype == torch.int64
        assert b.label.dtype == torch.float32
        assert all(t.shape == (2, N) for t in b.seqs.values())
        hits = (b.meta["user_id"] == SPECIAL["user_id"]).nonzero().flatten().tolist()
        for i in hits:
            found += 1
            assert b.segment == 1
            assert b.seqs["ad_seq_ad_id"][i].tolist() == [9, 8, 7, 0]
            assert b.seqs["ad_seq_dwell_ms"][i].tolist() == [3, 2, 1, 0]
            assert b.seqs["ad_seq_position"][i].tolist() == [12, 11, 10, 0]
            assert b.lengths["ad"][i].item() == 3
            assert b.targets["tgt_ad_id"][i].item() == 55 and b.targets["tgt_hour"][i].item() == 24
            assert b.label[i].item() == 1.0 and b.meta["event_ts_us"][i].item() == SPECIAL["event_ts_us"]
        # any other row: the formula of _row
        j = next(i for i, u in enumerate(b.meta["user_id"].tolist()) if u != SPECIAL["user_id"])
        k = b.meta["user_id"][j].item()
        length = k % 5
        assert b.lengths["ad"][j].item() == length
        jc = EBF_SOURCES["ad"].index("campaign_id")
        want = [1000 * k + 10 * jc + p + 1 for p in range(length)] + [0] * (N - length)
        assert b.seqs["ad_seq_campaign_id"][j].tolist() == want
        assert b.targets["tgt_campaign_id"][j].item() == 100 * k + 1
    assert found == 1  # v3 keeps D1 of set A, where the hand-written row lives; B=2 leaves no row out


def _shards(table, version, days, batch_size, **kw):
    loaders = [EbfLoader(table, version, POLICY, days, EBF, batch_size=batch_size, cur_shard=r, shard_count=2,
                         seed=7, workers=2, shuffle_buffer=4, **kw) for r in range(2)]
    return loaders, [_read_all(ld) for ld in loaders]


@pytest.mark.parametrize("version,days,batch_size,mode,steps,leftover", [
    # v0, files per segment 10, 10 -> one file per rank; B=5: 2 steps a segment, none left
    (0, (D1, D2), 5, "file", 4, 0),
    # same with B=4: 2 steps a segment, 20 - 2 * 8 = 4 rows left per segment
    (0, (D1, D2), 4, "file", 4, 8),
    # v3, files 10, 8: whole files give 10 / 8 rows, 2 steps of 3; the row stride gives 5 + 4 each, 3 steps
    (3, (D1, D2), 3, "row", 6, 0),
    # v3, D2 only: one file of 8 rows per segment, stride 4 / 4; B=2: 2 steps a segment
    (3, (D2,), 2, "row", 4, 0),
])
def test_two_shards_same_steps_disjoint_rows(table, version, days, batch_size, mode, steps, leftover):
    loaders, out = _shards(table, version, list(days), batch_size)
    assert [ld.steps_per_epoch for ld in loaders] == [steps, steps]
    assert [len(o) for o in out] == [steps, steps]
    assert loaders[0].schedule(0) == loaders[1].schedule(0)
    assert [b.segment for b in out[0]] == [b.segment for b in out[1]] == loaders[0].schedule(0)
    d = loaders[0].describe()
    assert {s["mode"] for s in d["segments"].values()} == {mode}
    assert sum(s["leftover_rows"] for s in d["segments"].values()) == leftover
    got = [_got(o) for o in out]
    union = got[0] + got[1]
    written = SET_A if version == 0 else [r for r in SET_A if r["ds"] == D1] + SET_C
    expected = _expected(written, days=days)
    assert max(union.values()) == 1  # no row twice, within or across ranks
    assert not (union - expected)  # only written rows
    assert sum(union.values()) == sum(expected.values()) - leftover


def test_shuffle_changes_with_epoch_not_content(table):
    loader = EbfLoader(table, 0, POLICY, [D1, D2], EBF, segments=[1], batch_size=2, seed=5, workers=1,
                       shuffle_buffer=4)
    e0, e1 = _read_all(loader, 0), _read_all(loader, 1)
    order0 = [u for b in e0 for u in b.meta["user_id"].tolist()]
    order1 = [u for b in e1 for u in b.meta["user_id"].tolist()]
    assert sorted(order0) == sorted(order1) and len(order0) == 20
    assert order0 != order1 and order0 != sorted(order0)


def test_plan_shards_and_column_conversion():
    # one file of 7 rows on 2 ranks: stride, rows 0,2,4,6 -> rank 0 (4), 1,3,5 -> rank 1 (3); B=2: 1 step
    p = plan_shards([7], 2, 2)
    assert (p.mode, p.rank_rows, p.steps) == ("row", (4, 3), 1)
    # 3 files 5, 4, 3 on 2 ranks: 5 -> r0, 4 -> r1, 3 -> r1 -> (5, 7): 2 steps of 2 vs stride (6, 6): 3 steps
    assert plan_shards([5, 4, 3], 2, 2).mode == "row"
    assert plan_shards([4, 4, 4, 4], 2, 2).rank_rows == (8, 8)
    # files of 3 and 4 rows, rows numbered across both: rank 0 keeps 0, 2 | 1, 3 (global 4, 6); rank 1: 1 | 0, 2
    assert [stride_phase([3, 4], k, r, 2) for r in (0, 1) for k in (0, 1)] == [0, 1, 1, 0]
    assert plan_shards([3, 4], 2, 1).rank_rows == (4, 3)
    import pyarrow as pa

    col = pa.chunked_array([pa.array([[1, 2, 0], [3, 0, 0]], pa.list_(pa.int32())),
                            pa.array([[4, 5, 6]], pa.list_(pa.int32()))])
    assert column_to_numpy("c", col).tolist() == [[1, 2, 0], [3, 0, 0], [4, 5, 6]]
    assert column_to_numpy("c", col.combine_chunks().slice(1)).tolist() == [[3, 0, 0], [4, 5, 6]]
    with pytest.raises(ValueError, match="fixed length"):
        column_to_numpy("c", pa.array([[1, 2], [3]], pa.list_(pa.int32())))
    with pytest.raises(ValueError, match="null"):
        column_to_numpy("c", pa.array([[1, 2], None], pa.list_(pa.int32())))


def test_loader_refuses_bad_arguments(table):
    with pytest.raises(ValueError, match="no files"):
        EbfLoader(table, 3, POLICY, ["2026-12-31"], EBF)
    with pytest.raises(ValueError, match="policy"):
        EbfLoader(table, 3, "no_such_policy", [D1], EBF)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="pin_memory"):
            EbfLoader(table, 3, POLICY, [D1], EBF, pin_memory=True)
