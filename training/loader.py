"""Petastorm loader for ``ebf_examples``: one pinned Delta version, batches homogeneous in (policy, segment).

What it reads. :func:`training.delta_snapshot.load_snapshot` replays the Delta log (no JVM) and gives the live
files of the pinned version; files a later ``replaceWhere`` removed are never opened, and a newer nightly
write does not change what a running training reads. Without a version (``version=None``) each day is read as
the last run that published it left it (:func:`training.delta_snapshot.published_snapshot`, the run ledger):
a build killed after its commit and before its ledger row is not read. For every (policy, segment) only the columns present in
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
rest (:class:`ShuffleBuffer`: the rows of a batch are a uniform draw, listed grouped by the row group that
holds them). ``shuffle=False`` (evaluation) ventilates row groups in path order and keeps rows in the order they
arrive (with several workers, row groups arrive in completion order).

Resources: each segment's reader has its own pool of ``workers`` threads, opened in a ``with`` block when the
epoch first needs that segment and closed when the epoch ends or the iterator is closed.

Where: the sharding plan and the segment schedule are in ``training/shards.py``, the Petastorm reader and its
worker in ``training/petastorm_reader.py``, the Arrow-to-numpy views and the shuffle buffer in
``training/batching.py``; the segments' specs and the loader here.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from dynamix_spark.config import Config, EbfConfig
from schemas.ebf import EBF_SOURCES, TARGET_COLUMNS, len_col, present_columns, seq_col
from training.batch import Batch
from training.batching import ShuffleBuffer, column_to_numpy
from training.delta_snapshot import DeltaFile, DeltaSnapshot, load_snapshot, published_snapshot
from training.petastorm_reader import open_reader
from training.shards import (
    FILE_MODE_MAX_LOSS,
    ShardPlan,
    derive_seed,
    plan_shards,
    segment_schedule,
    stride_phase,
)

__all__ = [
    "FILE_MODE_MAX_LOSS", "META_COLUMNS_READ", "EbfLoader", "SegmentSpec", "ShardPlan", "ShuffleBuffer",
    "column_to_numpy", "plan_shards", "segment_columns", "segment_schedule", "stride_phase",
]

META_COLUMNS_READ: tuple[str, ...] = ("user_id", "event_ts_us")
_SOURCE_OF_SEQ = {seq_col(s, a): s for s, attrs in EBF_SOURCES.items() for a in attrs}


def segment_columns(ebf: EbfConfig, policy: str, segment: int) -> tuple[str, ...]:
    """The sequence columns that carry data in (policy, segment): segment 0 is passive, >= 1 active."""
    if policy not in ebf.policies:
        raise ValueError(f"policy {policy!r} is not in ebf.policies ({sorted(ebf.policies)})")
    spec = ebf.policies[policy]
    return present_columns(spec.passive if segment == 0 else spec.active, ebf.low_importance_attributes)


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
        if snapshot is None:  # no version: each day as the last run that published it left it (the run ledger)
            snapshot = load_snapshot(table_path, version) if version is not None else published_snapshot(table_path, ds)
        self.snapshot = snapshot
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
        seed = derive_seed(self.seed, epoch, spec.segment, self.cur_shard)
        rng = np.random.default_rng(seed) if self.shuffle else None
        buf = ShuffleBuffer(self.batch_size, self.shuffle_buffer if self.shuffle else 0, rng,
                             out_dtypes=self._out_dtypes(spec), pin_memory=self.pin_memory)
        with open_reader(files, spec.columns, workers=self.workers, seed=seed % (2 ** 32), shuffle=self.shuffle,
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
            "day_versions": dict(self.snapshot.day_versions),
            "ds": list(self.ds), "batch_size": self.batch_size, "cur_shard": self.cur_shard,
            "shard_count": self.shard_count, "seed": self.seed,
            "files": sum(len(x.files) for x in self.segments.values()),
            "rows": sum(sum(x.file_rows) for x in self.segments.values()),
            "steps_per_epoch": self.steps_per_epoch, "segments": segs,
        }
