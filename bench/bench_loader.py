"""Benchmark of the training loader alone (no model): samples/s out of ``training.loader.EbfLoader``.

Input: a generated ``ebf_examples``-shaped Delta table of ``--rows`` rows for one day and one policy, half in
segment 0 and half in segment 1, ``--files`` Parquet files per segment with row groups of
``--row-group-rows`` rows, sequences of ``--seq-len`` (int32, padded with 0 after a random length) for the
columns the policy keeps, null columns for the ones it removes (as ``build_ebf`` writes them). The table is
written with pyarrow and a hand-written ``_delta_log`` (protocol 1/2, one commit with ``numRecords`` stats),
so generating it needs no JVM; it is cached under ``$DYNAMIX_BENCH_DATA`` (default ``/tmp/dynamix-bench``).

Knobs:

- ``--rows``: table size (default 200,000); ``--policy``: which columns exist (``baseline``: 11 ad
  sequences; ``boost_all``: 20 sequences over ad/organic/page);
- ``--seq-len``: N of every source (conf default 32); ``--files``, ``--row-group-rows``: file layout;
  a row group is the unit Petastorm's workers read and shuffle, so fewer, larger row groups mean less
  overhead and coarser shuffling;
- ``--batch-size``, ``--workers`` (reader threads per segment), ``--shuffle-buffer`` (rows kept back for
  mixing; 0 still permutes within each row group), ``--shard-count`` (reads rank 0's share only);
- ``--epochs``: epochs timed after the loader is built (the first includes the readers' start-up);
- ``--stock``: also time Petastorm's stock path on the same files and columns (``make_batch_reader`` +
  ``petastorm.pytorch.BatchedDataLoader`` with the same shuffling capacity), for the ratio.

Prints one JSON object: the knobs, ``snapshot_s`` (Delta log replay + planning), ``samples_per_s`` over all
timed epochs (batches x batch size / wall time), ``first_batch_s``, the process's CPU seconds and
``samples_per_cpu_s`` (samples per CPU-second: the per-core rate), with ``--split`` the seconds per stage
(:func:`time_split`), with ``--floor`` a bare pyarrow decode's rows per CPU-second (:func:`time_decode_floor`),
with ``--ab`` a paired comparison against another checkout's loader (:func:`time_ab`) and, with ``--stock``,
``stock_samples_per_s``.

    .venv-train/bin/python bench/bench_loader.py --rows 200000 --batch-size 1024 --workers 2 --stock

(the training side's environment: Petastorm, torch, no PySpark)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("DYNAMIX_BENCH_DATA", "/tmp/dynamix-bench")) / "loader"
DS = "2026-11-02"


def _write_file(path: str, rel: str, n: int, policy: str, segment: int, seq_len: int, row_group_rows: int,
                seed: tuple[int, ...], ds: str = DS) -> int:
    """One generated Parquet file of ``n`` rows (a process-pool task); returns its size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dynamix_spark.config import EbfConfig
    from schemas.ebf import EBF_EXAMPLES_COLUMNS, EBF_SOURCES, LEN_COLUMNS, TARGET_COLUMNS, seq_col
    from training.loader import segment_columns

    present = set(segment_columns(EbfConfig(seq_len={s: seq_len for s in EBF_SOURCES}), policy, segment))
    data_fields = [c for c in EBF_EXAMPLES_COLUMNS if c not in ("ds", "policy", "segment")]
    rng = np.random.default_rng(list(seed))
    lengths = rng.integers(0, seq_len + 1, n).astype(np.int32)
    pad = np.arange(seq_len)[None, :] >= lengths[:, None]
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * seq_len)
    cols = {"user_id": pa.array(rng.integers(1, 1 << 40, n)),
            "event_ts_us": pa.array(rng.integers(1_793_577_600_000_000, 1_793_664_000_000_000, n)),
            "label": pa.array(rng.integers(0, 2, n).astype(np.int32)),
            "segment_window_end_us": pa.nulls(n, pa.int64())}
    for c in TARGET_COLUMNS:
        cols[c] = pa.array(rng.integers(1, 1 << 31, n).astype(np.int32))
    for src, attrs in EBF_SOURCES.items():
        for a in attrs:
            c = seq_col(src, a)
            if c in present:
                v = rng.integers(1, 1 << 31, (n, seq_len), dtype=np.int32)
                v[pad] = 0
                cols[c] = pa.ListArray.from_arrays(offsets, pa.array(v.ravel()))
            else:
                cols[c] = pa.nulls(n, pa.list_(pa.int32()))
    for c in LEN_COLUMNS:
        cols[c] = pa.array(lengths)
    table = pa.table({name: cols[name] for name in data_fields})
    out = Path(path) / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, row_group_size=row_group_rows, compression="snappy")
    return out.stat().st_size


def make_table(rows: int, policy: str, seq_len: int, files: int, row_group_rows: int, seed: int = 0,
               processes: int = 1, root: Path | None = None, days: tuple[str, ...] = (DS,)) -> Path:
    """Write (once) the generated table under ``root`` (default: $DYNAMIX_BENCH_DATA/loader); return its path.

    ``processes`` > 1 writes the files in a process pool (bench/gpu.py: a few million rows in seconds on a
    16-core host). ``days``: ``rows`` rows for each of these ``ds`` (two days make a table that
    ``training/train.py`` can split into training and evaluation). The Delta log is written last, so a table
    whose log exists is complete."""
    from concurrent.futures import ProcessPoolExecutor

    from schemas.ebf import EBF_EXAMPLES_JSON

    path = (root or DATA) / (f"n{rows}_{policy}_L{seq_len}_f{files}_rg{row_group_rows}"
                             + (f"_d{len(days)}" if tuple(days) != (DS,) else ""))
    if (path / "_delta_log" / f"{0:020d}.json").exists():
        return path
    tasks = []
    for d, ds in enumerate(days):
        for segment in (0, 1):
            seg_rows = rows // 2 + (rows % 2 if segment == 1 else 0)
            bounds = np.linspace(0, seg_rows, files + 1).astype(int)
            for f in range(files):
                rel = f"ds={ds}/policy={policy}/segment={segment}/part-{f:05d}-{uuid.uuid4()}.c000.snappy.parquet"
                tasks.append((str(path), rel, int(bounds[f + 1] - bounds[f]), policy, segment, seq_len,
                              row_group_rows, (seed, segment, f) if d == 0 else (seed, segment, f, d), ds))
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            sizes = list(pool.map(_write_file, *zip(*tasks)))
    else:
        sizes = [_write_file(*t) for t in tasks]
    adds = [{"add": {"path": t[1], "partitionValues": {"ds": t[8], "policy": policy, "segment": str(t[4])},
                     "size": size, "modificationTime": 0, "dataChange": True,
                     "stats": json.dumps({"numRecords": t[2]})}} for t, size in zip(tasks, sizes)]
    meta = {"metaData": {"id": str(uuid.uuid4()), "format": {"provider": "parquet", "options": {}},
                         "schemaString": json.dumps(EBF_EXAMPLES_JSON), "partitionColumns": ["ds", "policy", "segment"],
                         "configuration": {}, "createdTime": 0}}
    log = path / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    lines = [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}, meta] + adds
    (log / f"{0:020d}.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@contextlib.contextmanager
def time_split(out: dict):
    """Seconds spent in the loader's stages while the block runs (``--split``), by wrapping them: ``decode``
    (Parquet row-group reads, in the reader threads, summed over threads), and in the consuming thread
    ``arrow_to_numpy`` (list columns to matrices, zero-copy views), ``keep_copy`` (the shuffle buffer gathering
    the rows it keeps back), ``batch_gather`` (gathering each batch into its tensors, widened to int64 on the way;
    pinned on CUDA), ``to_batch`` (assembling the ``Batch``). What the consuming thread spends elsewhere is
    mostly waiting for the reader threads (``wait_and_other``, filled in by the caller)."""
    import threading

    import pyarrow.parquet as pq

    import training.loader as L

    lock = threading.Lock()
    saved = [(pq.ParquetFile, "read_row_group", "decode"), (L, "column_to_numpy", "arrow_to_numpy"),
             (L.ShuffleBuffer, "_keep", "keep_copy"), (L.ShuffleBuffer, "_batch", "batch_gather"),
             (L.EbfLoader, "_to_batch", "to_batch")]
    for _, _, key in saved:
        out[key] = 0.0

    def timed(fn, key):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.perf_counter() - t0
                with lock:
                    out[key] += dt
        return wrapper

    originals = [o.__dict__[n] for o, n, _ in saved]  # __dict__: a staticmethod stays one when put back
    for (o, n, key), fn in zip(saved, originals):
        setattr(o, n, staticmethod(timed(fn.__func__, key)) if isinstance(fn, staticmethod) else timed(fn, key))
    try:
        yield out
    finally:
        for (o, n, _), fn in zip(saved, originals):
            setattr(o, n, fn)


def _decode_epoch(loader, columns_of=None) -> int:
    """One pass of bare pyarrow decoding over a loader's row groups and columns (``read_row_group``, as the
    loader's workers call it: pyarrow's own threads, no shuffling, no tensors); returns the rows read."""
    import pyarrow.parquet as pq

    rows = 0
    for spec in loader.segments.values():
        for f in spec.files:
            with open(f.path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                for g in range(pf.num_row_groups):
                    rows += pf.read_row_group(g, columns=list(spec.columns)).num_rows
    return rows


def time_decode_floor(path: Path, args) -> dict:
    """The floor under the loader: the same row groups and columns read with pyarrow alone (:func:`_decode_epoch`),
    ``--epochs`` times, one thread; rows per second and per CPU-second of the process."""
    ref = _make_loader(path, args)
    rows, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    for _ in range(args.epochs):
        rows += _decode_epoch(ref)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"floor_decode_rows_per_s": round(rows / wall), "floor_decode_rows_per_cpu_s": round(rows / cpu)}


def load_loader_module(path: str):
    """A ``training/loader.py`` from another checkout (e.g. a ``git worktree`` of an earlier commit), imported
    as a module of its own beside the current one (it imports this checkout's ``training.batch`` etc.)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_loader_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _make_loader(path: Path, args, module=None):
    from dynamix_spark.config import EbfConfig
    from schemas.ebf import EBF_SOURCES

    if module is None:
        import training.loader as module
    return module.EbfLoader(str(path), 0, args.policy, [DS], EbfConfig(seq_len={s: args.seq_len for s in EBF_SOURCES}),
                            batch_size=args.batch_size, shard_count=args.shard_count, seed=1, workers=args.workers,
                            shuffle_buffer=args.shuffle_buffer)


def time_ab(path: Path, args) -> dict:
    """``--ab LOADER_PY``: one epoch of the reference loader (that file), one of this checkout's and one bare
    decode (:func:`_decode_epoch`) in turn, ``--ab-rounds`` times (the order rotating each round), so that the
    three arms share the machine's load; medians of samples per second and per CPU-second of the process,
    and the median over rounds of the current / reference ratio of samples per CPU-second."""
    ref_mod = load_loader_module(args.ab)
    arms = {"ref": _make_loader(path, args, ref_mod), "cur": _make_loader(path, args), "decode": None}
    per: dict[str, list[tuple[float, float]]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(args.ab_rounds):
        for name in names[r % 3:] + names[:r % 3]:
            cpu0, t0 = time.process_time(), time.perf_counter()
            if name == "decode":
                n = _decode_epoch(arms["cur"])
            else:
                arms[name].set_epoch(r)
                n = sum(len(b) for b in arms[name])
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            per[name].append((n / wall, n / cpu))
    med = lambda xs: float(np.median(xs))  # noqa: E731
    out = {"ab_reference": args.ab, "ab_rounds": args.ab_rounds}
    for name, xs in per.items():
        out[f"ab_{name}_samples_per_s"] = round(med([x[0] for x in xs]))
        out[f"ab_{name}_samples_per_cpu_s"] = round(med([x[1] for x in xs]))
    out["ab_cur_over_ref_per_cpu_s"] = round(med([c[1] / f[1] for c, f in zip(per["cur"], per["ref"])]), 2)
    out["ab_cur_over_ref_per_cpu_s_rounds"] = [round(c[1] / f[1], 2) for c, f in zip(per["cur"], per["ref"])]
    return out


def time_loader(path: Path, args) -> dict:
    t0 = time.perf_counter()
    loader = _make_loader(path, args)
    snapshot_s = time.perf_counter() - t0
    batches, first = 0, None
    split: dict = {}
    cpu0 = time.process_time()
    with (time_split(split) if args.split else contextlib.nullcontext()):
        t0 = time.perf_counter()
        for epoch in range(args.epochs):
            loader.set_epoch(epoch)
            for _ in loader:
                batches += 1
                if first is None:
                    first = time.perf_counter() - t0
        wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    out = {"snapshot_s": round(snapshot_s, 3), "first_batch_s": round(first or 0.0, 3), "wall_s": round(wall, 2),
           "batches": batches, "samples_per_s": round(batches * args.batch_size / wall),
           "process_cpu_s": round(cpu, 2), "samples_per_cpu_s": round(batches * args.batch_size / cpu),
           "steps_per_epoch": loader.steps_per_epoch, "describe": loader.describe()}
    if args.split:
        consumer = sum(v for k, v in split.items() if k != "decode")
        out["split_s"] = {k: round(v, 3) for k, v in split.items()} | {"wait_and_other": round(wall - consumer, 3)}
    return out


def time_stock(path: Path, args) -> dict:
    """Petastorm's own path: make_batch_reader (stock ArrowReaderWorker) + BatchedDataLoader, segment by segment."""
    warnings.simplefilter("ignore")
    from petastorm import make_batch_reader
    from petastorm.pytorch import BatchedDataLoader

    from training.delta_snapshot import load_snapshot
    from training.loader import EbfLoader

    snap = load_snapshot(str(path), 0)
    from dynamix_spark.config import EbfConfig
    from schemas.ebf import EBF_SOURCES

    ref = EbfLoader(str(path), 0, args.policy, [DS], EbfConfig(seq_len={s: args.seq_len for s in EBF_SOURCES}),
                    snapshot=snap, batch_size=args.batch_size)
    rows, t0 = 0, time.perf_counter()
    for _ in range(args.epochs):
        for spec in ref.segments.values():
            urls = [f.url for f in spec.files]
            with make_batch_reader(urls, schema_fields=list(spec.columns), workers_count=args.workers, seed=1,
                                   num_epochs=1) as reader:
                loader = BatchedDataLoader(reader, batch_size=args.batch_size,
                                           shuffling_queue_capacity=args.shuffle_buffer)
                for b in loader:
                    rows += len(b["label"])
    wall = time.perf_counter() - t0
    return {"stock_wall_s": round(wall, 2), "stock_samples_per_s": round(rows / wall)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--policy", default="baseline")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--files", type=int, default=4, help="files per segment")
    p.add_argument("--row-group-rows", type=int, default=16_384)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shuffle-buffer", type=int, default=8192)
    p.add_argument("--shard-count", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--stock", action="store_true")
    p.add_argument("--split", action="store_true", help="also report the seconds spent per stage (time_split)")
    p.add_argument("--ab", metavar="LOADER_PY",
                   help="also alternate epochs with this reference training/loader.py and a bare decode (time_ab)")
    p.add_argument("--ab-rounds", type=int, default=6)
    p.add_argument("--floor", action="store_true",
                   help="also time a bare pyarrow decode of the same row groups and columns (time_decode_floor)")
    args = p.parse_args()
    t0 = time.perf_counter()
    path = make_table(args.rows, args.policy, args.seq_len, args.files, args.row_group_rows)
    out = {k: v for k, v in vars(args).items()}
    out["generate_s"] = round(time.perf_counter() - t0, 2)
    out.update(time_loader(path, args))
    if args.floor:
        out.update(time_decode_floor(path, args))
    if args.ab:
        out.update(time_ab(path, args))
    if args.stock:
        out.update(time_stock(path, args))
        out["speedup_vs_stock"] = round(out["samples_per_s"] / out["stock_samples_per_s"], 2)
    out["cpu_count"] = os.cpu_count()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
