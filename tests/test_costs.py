"""Cost per example (issue 20, ``training/costs.py``): lookups and FLOPs against hand counts, bytes read
against the files' own sizes. A training-side test (no Spark)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from schemas.ebf import TARGET_COLUMNS
from training.batch import Batch
from training.costs import bytes_read_per_example, flops_per_example, lookups_per_example


def test_lookups_are_one_per_target_and_per_sequence_position():
    b = Batch(targets={c: torch.zeros(8, dtype=torch.long) for c in TARGET_COLUMNS},
              seqs={"ad_seq_ad_id": torch.zeros(8, 16, dtype=torch.long),
                    "organic_seq_dwell_ms": torch.zeros(8, 5, dtype=torch.long)},
              lengths={"ad": torch.zeros(8), "organic": torch.zeros(8)}, label=torch.zeros(8))
    assert lookups_per_example(b) == len(TARGET_COLUMNS) + 16 + 5


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, b: Batch) -> torch.Tensor:
        return self.lin(b.targets["x"]).sum(-1)


def test_flops_of_a_linear_layer_by_hand():
    """y = x W^T + b with x [B, 4], W [3, 4]: 2 * 4 * 3 = 24 multiply-adds counted per example."""
    for n in (8, 32):
        b = Batch(targets={"x": torch.randn(n, 4)}, seqs={}, lengths={}, label=torch.zeros(n))
        assert flops_per_example(_Linear(), b) == 24


@dataclass
class _File:
    path: str


@dataclass
class _Spec:
    columns: tuple
    files: tuple


def test_bytes_read_count_only_the_read_columns(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(2):
        t = pa.table({"label": pa.array(rng.integers(0, 2, 5000), pa.int32()),
                      "tgt_ad_id": pa.array(rng.integers(0, 1 << 30, 5000)),
                      "ad_seq_ad_id": pa.array([list(rng.integers(0, 1 << 30, 16)) for _ in range(5000)],
                                               pa.list_(pa.int32()))})
        p = str(tmp_path / f"f{k}.parquet")
        pq.write_table(t, p, row_group_size=2000)
        paths.append(p)
    files = tuple(_File(p) for p in paths)
    everything = bytes_read_per_example({0: _Spec(("label", "tgt_ad_id", "ad_seq_ad_id"), files)})["overall"]
    no_seq = bytes_read_per_example({0: _Spec(("label", "tgt_ad_id"), files)})["overall"]
    seq_only = bytes_read_per_example({0: _Spec(("ad_seq_ad_id",), files)})["overall"]
    size = sum(__import__("os").path.getsize(p) for p in paths) / 10_000
    # the column chunks are the files less their footers and magic bytes: a little under the file size
    assert 0.9 * size < everything < size
    assert everything == no_seq + seq_only
    # 16 random 30-bit ints do not compress: at least 16 x 4 bytes per row for the list column
    assert seq_only > 60 and no_seq < 20
