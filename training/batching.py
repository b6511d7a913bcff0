"""Batching for the training loader: Arrow columns as numpy views (:func:`column_to_numpy`) and the columnar
shuffle buffer (:class:`ShuffleBuffer`) that gathers each batch from the row groups straight into its tensors
(``training/loader.py``'s docstring, "Shuffling")."""
from __future__ import annotations

import functools
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa
import torch


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


class ShuffleBuffer:
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
