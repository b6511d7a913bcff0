"""How the training loader splits a segment over ranks so that every rank runs the same number of steps
(petastorm issue #508), and the order of an epoch's segments: pure functions of the files' row counts, the rank
count, the seed and the epoch, the same on every rank with no communication (``training/loader.py``'s docstring,
"Sharding", says how the modes read)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# Row mode replaces file mode when whole files would give fewer than (1 - this) of row mode's steps.
FILE_MODE_MAX_LOSS = 0.05


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


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % 2 ** 64 for p in parts]).generate_state(1)[0])


def segment_schedule(steps: Mapping[int, int], seed: int, epoch: int) -> list[int]:
    """The order in which an epoch's batches come from each segment: a permutation of
    ``[s] * steps[s]`` drawn from (seed, epoch) only, hence the same on every rank."""
    order = np.array([s for s in sorted(steps) for _ in range(steps[s])], dtype=np.int64)
    np.random.default_rng(derive_seed(seed, epoch, 0x5C4ED)).shuffle(order)
    return [int(s) for s in order]
