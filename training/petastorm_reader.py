"""The training loader's Petastorm plumbing: a ``Reader`` over explicit ``file://`` URLs whose worker publishes
each row group's Arrow table as is (row-strided when a segment is row-sharded) instead of ``ArrowReaderWorker``'s
row-by-row matrices (``training/loader.py``'s docstring, "How it reads")."""
from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.delta_snapshot import DeltaFile


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
def open_reader(files: Sequence[DeltaFile], columns: Sequence[str], *, workers: int, seed: int,
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
