"""Petastorm loader for ``ebf_examples``: one pinned Delta version, batches homogeneous in (policy, segment).

What it reads. :func:`training.delta_snapshot.load_snapshot` replays the Delta log (no JVM) and gives the live
files of the pinned version; files a later ``replaceWhere`` removed are never opened, and a newer nightly
write does not change what a running training reads. For every (policy, segment) only the columns present in
that partition are read (``schemas.ebf.present_columns`` of the policy's passive list for segment 0, active
list for segments >= 1): a removed attribute is a null column in the file and is never decoded.

How it reads. Petastorm's ``Reader`` (what ``make_batch_reader`` builds: explicit ``file://`` URLs, a
``schema_fields`` view, a thread pool, row groups ventilated in a seeded random order) with one change: the
worker class. ``make_batch_reader`` hard-wires ``ArrowReaderWorker``, whose results reader turns every
list column into a matrix row by row (``np.vstack(column.tolist())``) and which cannot keep a row stride.
:class:`_EbfArrowWorker` publishes the Arrow table of a row group as is (row-strided when a segment is
row-sharded, below); the consumer views each list column as an int32 ``[rows, N]`` matrix over the Arrow
offsets and values buffers (no per-row Python, no copy), shuffles in a columnar buffer and gathers each batch
straight into its ``Batch`` tensors (int64 ids, lengths and meta, a float32 label; page-locked with
``pin_memory``, so a ``non_blocking`` copy to the GPU needs no further host copy). ``bench/bench_loader.py``
measures it: samples/s and per CPU-second, the stages (``--split``), the ratio to ``make_batch_reader`` +
``BatchedDataLoader`` (``--stock``), the floor of a bare pyarrow decode (``--floor``) and another checkout's
loader epoch for epoch (``--ab``); BENCHMARKS.md has the figures.

Sharding (every rank runs the same number of steps: petastorm issue #508). Each rank computes, from the
Delta log's ``numRecords`` alone (a file's Parquet footer when a writer kept no stats), every rank's share of
every segment, with no communication:

- ``file`` mode: whole files go to ranks, largest first to the rank with the fewest rows (LPT; ties to the
  lower rank). Used when the segment has at least ``shard_count`` files and this loses at most
  :data:`FILE_MODE_MAX_LOSS` of the steps that row mode would give; each rank reads only its own files.
- ``row`` mode: every rank reads every file of the segment and keeps the rows whose index in the
  concatenation of the segment's files (path order) is congruent to its rank modulo ``shard_count``: shares
  differ by at most one row, at the cost of every rank decoding all the segment's rows.

A segment runs ``steps = min over ranks floor(rank_rows / batch_size)`` full batches on every rank. The
segments are interleaved by a schedule drawn from (seed, epoch) alone, so all ranks share it.

Leftover rows: per segment, ``rows - shard_count * steps * batch_size`` rows are not yielded in an epoch
(a rank's surplus over the least-loaded rank, and each rank's last partial batch). They are the tail of each
rank's shuffled stream, so which rows they are changes from epoch to epoch (with ``shuffle=False`` they are
the same tail every epoch). :meth:`EbfLoader.describe` reports their number. ``drop_last=False`` (one rank,
evaluation) leaves none: each segment ends with a partial batch.

Shuffling: row groups in a random order drawn from (seed, epoch, segment, rank); rows within and across row
groups through a buffer that keeps ``shuffle_buffer`` rows back and emits uniformly drawn batches from the
rest (:class:`_ShuffleBuffer`: the rows of a batch are a uniform draw, listed grouped by the row group that
holds them). ``shuffle=False`` (evaluation) ventilates row groups in path order and keeps rows in the order they
arrive (with several workers, row groups arrive in completion order).

Resources: each segment's reader has its own pool of ``workers`` threads, opened in a ``with`` block when the
epoch first needs that segment and closed when the epoch ends or the iterator is closed.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dynamix_spark.config import Config, EbfConfig
from schemas.ebf import EBF_SOURCES, TARGET_COLUMNS, len_col, present_columns, seq_col
from training.batch import Batch
from training.delta_snapshot import DeltaFile, DeltaSnapshot, load_snapshot

# Row mode replaces file mode when whole files would give fewer than (1 - this) of row mode's steps.
FILE_MODE_MAX_LOSS = 0.05
META_COLUMNS_READ: tuple[str, ...] = ("user_id", "event_ts_us")
_SOURCE_OF_SEQ = {seq_col(s, a): s for s, attrs in EBF_SOURCES.items() for a in attrs}


def segment_columns(ebf: EbfConfig, policy: str, segment: int) -> tuple[str, ...]:
    """The sequence columns that carry data in (policy, segment): segment 0 is passive, >= 1 active."""
    if policy not in ebf.policies:
        raise ValueError(f"policy {policy!r} is not in ebf.policies ({sorted(ebf.policies)})")
    spec = ebf.policies[policy]
    return present_columns(spec.passive if segment == 0 else spec.active, ebf.low_importance_attributes)


# --- sharding ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShardPlan:
    """One segment's split over ranks; the same object on every rank."""
    mode: str  # "file" or "row"
    rank_files: tuple[tuple[int, ...], ...]  # per rank: indices into the segment's files (path order)
    rank_rows: tuple[int, ...]  # rows each rank reads (after the row stride in row mode)
    steps: int  # full batches every rank yields per epoch


def _stride_rows(total_rows: int, rank: int, shard_count: int) -> int:
    """Rows g in [0, total_rows) with g % shard_count == rank."""
    return max(0, (total_rows - rank + shard_count - 1) // shard_count)


def stride_phase(file_rows: Sequence[int], file_index: int, rank: int, shard_count: int) -> int:
    """Row mode: the rank keeps rows i of file ``file_index`` with i % shard_count == this phase, i.e. the rows
    whose index in the concatenation of the segment's files (path order) is congruent to rank."""
    return (rank - sum(file_rows[:file_index])) % shard_count


def plan_shards(file_rows: Sequence[int], shard_count: int, batch_size: int) -> ShardPlan:
    """Split a segment's files (their row counts, in path order) over ``shard_count`` ranks."""
    if shard_count < 1 or batch_size < 1:
        raise ValueError("shard_count and batch_size must be >= 1")
    n = len(file_rows)
    row_rows = tuple(_stride_rows(sum(file_rows), rank, shard_count) for rank in range(shard_count))
    row_plan = ShardPlan("row", tuple(tuple(range(n)) for _ in range(shard_count)), row_rows,
                         min(row_rows) // batch_size)
    if n < shard_count:
        return row_plan
    loads = [0] * shard_count
    owned: list[list[int]] = [[] for _ in range(shard_count)]
    for k in sorted(range(n), key=lambda k: (-file_rows[k], k)):
        rank = min(range(shard_count), key=lambda r: (loads[r], r))
        loads[rank] += file_rows[k]
        owned[rank].append(k)
    file_plan = ShardPlan("file", tuple(tuple(sorted(o)) for o in owned), tuple(loads),
                          min(loads) // batch_size)
    if shard_count == 1 or file_plan.steps >= (1 - FILE_MODE_MAX_LOSS) * row_plan.steps:
        return file_plan
    return row_plan


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % 2 ** 64 for p in parts]).generate_state(1)[0])


def segment_schedule(steps: Mapping[int, int], seed: int, epoch: int) -> list[int]:
    """The order in which an epoch's batches come from each segment: a permutation of
    ``[s] * steps[s]`` drawn from (seed, epoch) only, hence the same on every rank."""
    order = np.array([s for s in sorted(steps) for _ in range(steps[s])], dtype=np.int64)
    np.random.default_rng(_seed(seed, epoch, 0x5C4ED)).shuffle(order)
    return [int(s) for s in order]


# --- Arrow -> numpy ---------------------------------------------------------------------------------------

def column_to_numpy(name: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A scalar column as a 1-d array, a fixed-length list column as a ``[rows, N]`` matrix (no row loop).

    Nulls are refused: the contract pads sequences with 0 and a column the loader reads is never null.
    """
    if isinstance(column, pa.ChunkedArray):
        arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        arr = column
    if arr.null_count:
        raise ValueError(f"column {name}: {arr.null_count} null values in a column the contract says is present")
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        offsets = arr.offsets.to_numpy()
        widths = np.diff(offsets)
        width = int(widths[0]) if len(widths) else 0
        if len(widths) and not (widths == width).all():
            raise ValueError(f"column {name}: sequences of lengths {sorted(set(widths.tolist()))[:5]}; "
                             "the contract pads every sequence to one fixed length")
        flat = arr.flatten()
        if flat.null_count:
            raise ValueError(f"column {name}: null elements inside sequences (padding must be 0)")
        return flat.to_numpy().reshape(len(arr), width)
    return arr.to_numpy()


@functools.lru_cache(maxsize=None)
def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


class _ShuffleBuffer:
    """Columnar shuffling buffer: row groups in, batches of ``batch_size`` rows out as CPU tensors.

    Draws: on each row group it permutes (kept rows + new rows) and emits full batches from the front of the
    permutation while keeping at least ``keep_rows`` back to mix with the next row group, so a batch is a
    uniform draw without replacement from the pool. ``rng=None`` keeps row order (no shuffling).

    Copies (issue 19): a row group's columns arrive as numpy views over its Arrow buffers and are never
    concatenated. Each batch is gathered straight from where its rows are held (the kept rows, the row groups)
    into its output tensors: one copy of every row, cast on the way to ``out_dtypes`` (through a scratch block
    of ``batch_size`` rows that stays in cache), in page-locked memory with ``pin_memory`` (no second copy to
    pin). The rows kept back are gathered once into one of two reused buffers, at their source dtype. A batch
    holds the same rows as a gather in permutation order would, but grouped by where they are held (kept rows
    first, then each row group's) and in row order within a group, so the gathers walk memory forwards; with
    ``rng=None`` this is the arrival order.
    """

    def __init__(self, batch_size: int, keep_rows: int, rng: np.random.Generator | None,
                 out_dtypes: Mapping[str, Any] | None = None, pin_memory: bool = False) -> None:
        self.batch_size, self.keep_rows, self.rng = batch_size, keep_rows, rng
        self.out_dtypes = {k: np.dtype(v) for k, v in (out_dtypes or {}).items()}
        self.pin_memory = pin_memory
        self._parts: list[dict[str, np.ndarray]] = []  # row groups not drawn from yet, in arrival order
        self._part_rows: list[int] = []
        self._kept_bufs: list[dict[str, np.ndarray]] = []  # two buffers, used in turn for the kept rows
        self._kept: dict[str, np.ndarray] = {}  # views of the rows kept back, in source order
        self._kept_row = np.empty(0, dtype=np.int64)  # the pool's i-th kept row is row _kept_row[i] of _kept
        self._scratch: dict[str, np.ndarray] = {}
        self._rows = 0

    def _sources(self) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """Where the pool's rows are held (kept rows, then the row groups) and their bounds in key space: the
        key of a held row is its row in the kept rows, or the kept count plus its row in the row groups."""
        k = len(self._kept_row)
        srcs = ([self._kept] if k else []) + self._parts
        sizes = ([k] if k else []) + self._part_rows
        return srcs, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    def _keys(self, pool_pos: np.ndarray) -> np.ndarray:
        """Pool positions (the permutation's values) -> keys; the kept rows come first in the pool."""
        keys = pool_pos.astype(np.int64, copy=True)
        kept = pool_pos < len(self._kept_row)
        keys[kept] = self._kept_row[pool_pos[kept]]
        return keys

    def _gather(self, srcs: list[dict[str, np.ndarray]], bounds: np.ndarray, keys: np.ndarray,
                out: Mapping[str, np.ndarray]) -> None:
        """The rows with these (ascending) keys, in key order, into ``out``'s arrays."""
        cuts = np.searchsorted(keys, bounds)
        pieces = [(keys[cuts[s]:cuts[s + 1]] - bounds[s], src) for s, src in enumerate(srcs) if cuts[s + 1] > cuts[s]]
        for name, dst in out.items():
            pos = 0
            for idx, src in pieces:
                col, m = src[name], len(idx)
                if col.dtype == dst.dtype:  # mode="clip": take writes into ``out`` directly (no buffering)
                    np.take(col, idx, axis=0, out=dst[pos:pos + m], mode="clip")
                else:
                    tmp = self._scratch.get(name)
                    if tmp is None or tmp.shape[0] < m or tmp.dtype != col.dtype:
                        tmp = self._scratch[name] = np.empty((max(m, self.batch_size),) + col.shape[1:], col.dtype)
                    np.take(col, idx, axis=0, out=tmp[:m], mode="clip")
                    dst[pos:pos + m] = tmp[:m]
                pos += m

    def _batch(self, srcs: list[dict[str, np.ndarray]], bounds: np.ndarray,
               keys: np.ndarray) -> dict[str, torch.Tensor]:
        """The rows with these keys as tensors of ``out_dtypes``, in key order."""
        keys = np.sort(keys)
        out = {name: torch.empty((len(keys),) + col.shape[1:],
                                 dtype=_torch_dtype(self.out_dtypes.get(name, col.dtype)), pin_memory=self.pin_memory)
               for name, col in srcs[0].items()}
        self._gather(srcs, bounds, keys, {name: t.numpy() for name, t in out.items()})
        return out

    def _keep(self, srcs: list[dict[str, np.ndarray]], bounds: np.ndarray, keys: np.ndarray) -> None:
        """Make the rows with these keys, in this order, the kept rows (the next pool's first positions): gathered
        in source order into the buffer the current kept rows are not in."""
        order = np.argsort(keys, kind="stable")
        n = len(keys)
        kept_row = np.empty(n, dtype=np.int64)
        kept_row[order] = np.arange(n)
        if n:
            cap = max(n, self.keep_rows + self.batch_size)
            if len(self._kept_bufs) < 2 or len(next(iter(self._kept_bufs[0].values()))) < n:
                self._kept_bufs.append({name: np.empty((cap,) + col.shape[1:], col.dtype)
                                        for name, col in srcs[0].items()})
                self._kept_bufs = self._kept_bufs[-2:]
            else:
                self._kept_bufs.reverse()
            buf = self._kept_bufs[-1]  # not the one the current kept rows are in
            self._gather(srcs, bounds, keys[order], {name: a[:n] for name, a in buf.items()})
            self._kept = {name: a[:n] for name, a in buf.items()}
        else:
            self._kept = {}
        self._kept_row = kept_row

    def _emit(self, keep: int) -> Iterator[dict[str, torch.Tensor]]:
        n_batches = max(0, (self._rows - keep) // self.batch_size)
        if n_batches == 0:
            return
        srcs, bounds = self._sources()
        order = self.rng.permutation(self._rows) if self.rng is not None else np.arange(self._rows)
        keys = self._keys(order)  # before _keep renumbers the kept rows
        used = n_batches * self.batch_size
        self._keep(srcs, bounds, keys[used:])
        self._parts, self._part_rows, self._rows = [], [], len(order) - used
        for b in range(n_batches):
            yield self._batch(srcs, bounds, keys[b * self.batch_size:(b + 1) * self.batch_size])

    def add(self, cols: dict[str, np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        n = len(next(iter(cols.values())))
        if n:
            self._parts.append(cols)
            self._part_rows.append(n)
            self._rows += n
        if self._rows >= self.keep_rows + self.batch_size:
            yield from self._emit(self.keep_rows)

    def drain(self, keep_partial: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """Full batches from what is left; the last partial batch only with ``keep_partial``."""
        yield from self._emit(0)
        if keep_partial and self._rows:
            srcs, bounds = self._sources()
            keys = np.arange(self._rows)  # every row: no draw needed
            self._parts, self._part_rows, self._rows = [], [], 0
            yield self._batch(srcs, bounds, keys)


# --- Petastorm worker -------------------------------------------------------------------------------------

def _petastorm():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from petastorm.arrow_reader_worker import ArrowReaderWorker
        from petastorm.workers_pool import EmptyResultError
    return ArrowReaderWorker, EmptyResultError


class _ArrowTableQueueReader:
    """Petastorm results reader that hands the worker's Arrow table through untouched."""
    batched_output = True

    def read_next(self, workers_pool, schema, ngram):
        _, empty = _petastorm()
        try:
            return workers_pool.get_results()
        except empty:
            raise StopIteration from None


def _make_worker_class(row_stride: Mapping[str, tuple[int, int]] | None):
    """An ``ArrowReaderWorker`` that reads one row group of the requested columns and publishes it as an
    Arrow table; with ``row_stride`` (path -> (phase, shard_count)) it keeps rows whose index in the file is
    congruent to phase modulo shard_count."""
    base, _ = _petastorm()

    class _EbfArrowWorker(base):
        @staticmethod
        def new_results_queue_reader():
            return _ArrowTableQueueReader()

        def process(self, piece_index, worker_predicate, shuffle_row_drop_partition):
            piece = self._split_pieces[piece_index]
            columns = [f.name for f in self._schema.fields.values()]
            with open(piece.path, "rb") as f:
                pfile = pq.ParquetFile(f)
                table = pfile.read_row_group(piece.row_group, columns=columns)
                if row_stride is not None:
                    phase, count = row_stride[os.path.normpath(piece.path)]
                    md = pfile.metadata
                    first_row = sum(md.row_group(i).num_rows for i in range(piece.row_group))
                    keep = np.nonzero((first_row + np.arange(table.num_rows)) % count == phase)[0]
                    table = table.take(pa.array(keep))
            if table.num_rows:
                self.publish_func(table)

    return _EbfArrowWorker


@contextmanager
def _open_reader(files: Sequence[DeltaFile], columns: Sequence[str], *, workers: int, seed: int,
                 shuffle: bool, row_stride: Mapping[str, tuple[int, int]] | None):
    """A Petastorm ``Reader`` over explicit ``file://`` URLs, limited to ``columns``; stopped and joined on exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from petastorm.fs_utils import get_filesystem_and_path_or_paths
        from petastorm.reader import Reader
        from petastorm.workers_pool.thread_pool import ThreadPool

        urls = [f.url for f in files]
        filesystem, paths = get_filesystem_and_path_or_paths(urls)
        reader = Reader(filesystem, paths,
                        schema_fields=[re.escape(c) for c in columns],  # regexes, matched in full
                        worker_class=_make_worker_class(row_stride),
                        reader_pool=ThreadPool(workers, results_queue_size=workers + 1),
                        seed=seed, shuffle_rows=False, shuffle_row_groups=shuffle, num_epochs=1,
                        is_batched_reader=True)
    with reader:
        yield reader


# --- the loader -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentSpec:
    segment: int
    seq_columns: tuple[str, ...]  # present sequence columns
    sources: tuple[str, ...]  # sources with at least one present column (their <src>_len is read)
    files: tuple[DeltaFile, ...]  # path order
    file_rows: tuple[int, ...]
    plan: ShardPlan

    @property
    def columns(self) -> tuple[str, ...]:
        return (META_COLUMNS_READ + ("label",) + TARGET_COLUMNS + self.seq_columns
                + tuple(len_col(s) for s in self.sources))


class EbfLoader:
    """Batches of one policy over some days of ``ebf_examples`` at one Delta version, for one rank.

    Iterating gives one epoch (``set_epoch`` picks which: it changes the shuffles and the segment schedule,
    not the number of steps). Every rank built with the same arguments but its own ``cur_shard`` yields
    exactly :attr:`steps_per_epoch` batches of ``batch_size`` rows. ``drop_last=False`` (one rank only, for
    evaluation) also yields each segment's last partial batch, so every row is read once.
    """

    def __init__(self, table_path: str, version: int | None, policy: str, ds: Sequence[str], ebf: EbfConfig, *,
                 segments: Sequence[int] | None = None, batch_size: int = 1024, cur_shard: int = 0,
                 shard_count: int = 1, seed: int = 0, workers: int = 2, shuffle_buffer: int = 8192,
                 shuffle: bool = True, drop_last: bool = True, pin_memory: bool = False,
                 snapshot: DeltaSnapshot | None = None) -> None:
        if not 0 <= cur_shard < shard_count:
            raise ValueError(f"cur_shard must be in [0, shard_count={shard_count}), got {cur_shard}")
        if batch_size < 1 or workers < 1 or shuffle_buffer < 0:
            raise ValueError("batch_size >= 1, workers >= 1 and shuffle_buffer >= 0 required")
        if pin_memory and not torch.cuda.is_available():
            raise ValueError("pin_memory=True needs a CUDA device; none is available")
        if not ds:
            raise ValueError("ds: at least one day is needed")
        if not drop_last and shard_count > 1:
            raise ValueError("drop_last=False adds a partial batch per segment, whose existence differs between "
                             "ranks; use it with shard_count=1 (evaluation)")
        if policy not in ebf.policies:
            raise ValueError(f"policy {policy!r} is not in ebf.policies ({sorted(ebf.policies)})")
        self.snapshot = snapshot if snapshot is not None else load_snapshot(table_path, version)
        if version is not None and self.snapshot.version != version:
            raise ValueError(f"snapshot is version {self.snapshot.version}, asked for {version}")
        self.policy, self.ds = policy, tuple(ds)
        self.batch_size, self.cur_shard, self.shard_count = batch_size, cur_shard, shard_count
        self.seed, self.workers, self.shuffle_buffer, self.shuffle = seed, workers, shuffle_buffer, shuffle
        self.pin_memory, self.drop_last = pin_memory, drop_last
        self._epoch = 0

        by_segment: dict[int, list[DeltaFile]] = {}
        seen_ds: set[str] = set()
        for f in self.snapshot.files:
            pv = f.partition_values
            if pv.get("policy") == policy and pv.get("ds") in self.ds:
                seen_ds.add(pv["ds"])
                by_segment.setdefault(int(pv["segment"]), []).append(f)
        missing = sorted(set(self.ds) - seen_ds)
        if missing:
            raise ValueError(f"{self.snapshot.table_path}@v{self.snapshot.version}: no files for policy "
                             f"{policy!r} on ds {missing}")
        if segments is None:
            segments = sorted(by_segment)
        absent = sorted(set(segments) - set(by_segment))
        if absent:
            raise ValueError(f"segments {absent} have no files for policy {policy!r} on ds {list(self.ds)}")

        self.segments: dict[int, SegmentSpec] = {}
        for s in sorted(set(segments)):
            files = tuple(sorted(by_segment[s], key=lambda f: f.path))
            rows = tuple(f.num_records if f.num_records is not None else pq.ParquetFile(f.path).metadata.num_rows
                         for f in files)
            seqs = segment_columns(ebf, policy, s)
            sources = tuple(src for src in EBF_SOURCES if any(_SOURCE_OF_SEQ[c] == src for c in seqs))
            plan = plan_shards(rows, shard_count, batch_size)
            if not drop_last:  # one rank: every row, the last batch of a segment possibly short
                plan = dataclasses.replace(plan, steps=-(-plan.rank_rows[0] // batch_size))
            self.segments[s] = SegmentSpec(s, seqs, sources, files, rows, plan)

    @classmethod
    def from_config(cls, table_path: str, version: int | None, cfg: Config, ds: Sequence[str], *,
                    cur_shard: int = 0, shard_count: int = 1, **kwargs: Any) -> "EbfLoader":
        """Policy, batch size, seed, workers and shuffle buffer from ``cfg.train``; ``kwargs`` add to or override
        them (the evaluation loader: ``shuffle_buffer=0, shuffle=False, drop_last=False``)."""
        t = cfg.train
        opts = {"batch_size": t.batch_size, "seed": t.seed, "workers": t.workers, "shuffle_buffer": t.shuffle_buffer,
                **kwargs}
        return cls(table_path, version, t.policy, ds, cfg.ebf, cur_shard=cur_shard, shard_count=shard_count, **opts)

    @property
    def version(self) -> int:
        return self.snapshot.version

    @property
    def steps_per_epoch(self) -> int:
        return sum(spec.plan.steps for spec in self.segments.values())

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def schedule(self, epoch: int | None = None) -> list[int]:
        steps = {s: spec.plan.steps for s, spec in self.segments.items()}
        return segment_schedule(steps, self.seed, self._epoch if epoch is None else epoch)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(self._epoch)

    def iter_epoch(self, epoch: int) -> Iterator[Batch]:
        """Exactly ``steps_per_epoch`` batches, segments in :meth:`schedule` order."""
        streams: dict[int, Iterator[Batch]] = {}
        try:
            for s in self.schedule(epoch):
                if s not in streams:
                    streams[s] = self._segment_batches(self.segments[s], epoch)
                try:
                    batch = next(streams[s])
                except StopIteration:
                    raise RuntimeError(
                        f"segment {s} ran out of rows before its {self.segments[s].plan.steps} steps: the files "
                        "hold fewer rows than the Delta log's numRecords say") from None
                yield batch  # with pin_memory, gathered straight into page-locked memory
        finally:
            for stream in streams.values():
                stream.close()  # leaves the reader's with-block: its worker pool stops

    def _segment_batches(self, spec: SegmentSpec, epoch: int) -> Iterator[Batch]:
        plan = spec.plan
        files = [spec.files[k] for k in plan.rank_files[self.cur_shard]]
        stride = None
        if plan.mode == "row" and self.shard_count > 1:
            stride = {os.path.normpath(f.path): (stride_phase(spec.file_rows, k, self.cur_shard, self.shard_count),
                                                 self.shard_count)
                      for k, f in enumerate(spec.files)}
        seed = _seed(self.seed, epoch, spec.segment, self.cur_shard)
        rng = np.random.default_rng(seed) if self.shuffle else None
        buf = _ShuffleBuffer(self.batch_size, self.shuffle_buffer if self.shuffle else 0, rng,
                             out_dtypes=self._out_dtypes(spec), pin_memory=self.pin_memory)
        with _open_reader(files, spec.columns, workers=self.workers, seed=seed % (2 ** 32), shuffle=self.shuffle,
                          row_stride=stride) as reader:
            for table in reader:
                cols = {name: column_to_numpy(name, table.column(name)) for name in spec.columns}
                for chunk in buf.add(cols):
                    yield self._to_batch(chunk, spec)
            for chunk in buf.drain(keep_partial=not self.drop_last):
                yield self._to_batch(chunk, spec)

    @staticmethod
    def _out_dtypes(spec: SegmentSpec) -> dict[str, Any]:
        """What the batch's tensors hold: int64 ids, lengths and meta (the batch contract), a float32 label."""
        return {name: np.float32 if name == "label" else np.int64 for name in spec.columns}

    def _to_batch(self, cols: Mapping[str, torch.Tensor], spec: SegmentSpec) -> Batch:
        return Batch(
            targets={c: cols[c] for c in TARGET_COLUMNS},
            seqs={c: cols[c] for c in spec.seq_columns},
            lengths={s: cols[len_col(s)] for s in spec.sources},
            label=cols["label"],
            policy=self.policy,
            segment=spec.segment,
            meta={c: cols[c] for c in META_COLUMNS_READ},
        )

    def describe(self) -> dict[str, Any]:
        """What this loader reads, for the training report (plain JSON)."""
        segs = {}
        for s, spec in self.segments.items():
            rows = sum(spec.file_rows)
            segs[str(s)] = {
                "files": len(spec.files), "rows": rows, "mode": spec.plan.mode, "steps": spec.plan.steps,
                "rank_rows": list(spec.plan.rank_rows),
                "leftover_rows": max(0, rows - self.shard_count * spec.plan.steps * self.batch_size),
                "seq_columns": list(spec.seq_columns),
            }
        return {
            "table": self.snapshot.table_path, "version": self.snapshot.version, "policy": self.policy,
            "ds": list(self.ds), "batch_size": self.batch_size, "cur_shard": self.cur_shard,
            "shard_count": self.shard_count, "seed": self.seed,
            "files": sum(len(x.files) for x in self.segments.values()),
            "rows": sum(sum(x.file_rows) for x in self.segments.values()),
            "steps_per_epoch": self.steps_per_epoch, "segments": segs,
        }
