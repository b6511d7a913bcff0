"""What one example costs, in units that do not move with the host's load (issue 20): bytes read, embedding
lookups and model FLOPs per example, per segment and overall.

- **bytes read**: the compressed size of the column chunks the loader reads for a (policy, segment), from the
  Parquet footers of the snapshot's files, over their rows. A removed attribute is a column the loader does
  not read, so removal shows here directly.
- **embedding lookups**: ids looked up per example by ``FieldEmbedding``: one per target field and one per
  position of every present sequence column (padding positions included: the table is called on the whole
  [B, N] matrix), and one per present match or length field (``model.target_match``, ``model.length_fields``);
  counted from the batch's tensors.
- **model FLOPs**: one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and
  the like; embedding gathers are counted as lookups above), over the batch's rows. Training costs about 3x
  a forward (forward, and backward for inputs and weights).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import pyarrow.parquet as pq
import torch

from training.batch import Batch


def bytes_read_per_example(segments: Mapping[int, object]) -> dict:
    """``segments``: ``EbfLoader.segments`` (``SegmentSpec``: ``columns``, ``files``). Compressed bytes of the
    read columns' chunks per row, per segment and over all rows."""
    per, total_bytes, total_rows = {}, 0, 0
    for s, spec in segments.items():
        wanted = set(spec.columns)
        nbytes = rows = 0
        for f in spec.files:
            md = pq.ParquetFile(f.path).metadata
            rows += md.num_rows
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                for c in range(rg.num_columns):
                    col = rg.column(c)
                    if col.path_in_schema.split(".", 1)[0] in wanted:
                        nbytes += col.total_compressed_size
        per[str(s)] = nbytes / rows if rows else None
        total_bytes, total_rows = total_bytes + nbytes, total_rows + rows
    return {"overall": total_bytes / total_rows if total_rows else None, "per_segment": per}


def lookups_per_example(b: Batch, extra_fields: int = 0) -> float:
    """``extra_fields``: the model's match and length fields present in ``b`` (one lookup each per example)."""
    n = len(b)
    return (sum(t.numel() for t in b.targets.values()) + sum(t.numel() for t in b.seqs.values())) / n + extra_fields


def flops_per_example(model: torch.nn.Module, b: Batch) -> float:
    """Forward FLOPs of ``model`` on ``b`` over its rows (no gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(b)
    model.train(was_training)
    return counter.get_total_flops() / len(b)


def model_costs(model: torch.nn.Module, batches: Iterable[Batch], rows_per_segment: Mapping[str, int]) -> dict:
    """Lookups and forward FLOPs per example for the first batch of each segment in ``batches`` (a batch is
    homogeneous in segment, and both are per-row constants within it); overall = weighted by the segments'
    rows (``rows_per_segment``)."""
    per: dict[str, dict] = {}
    for b in batches:
        key = str(b.segment)
        if key not in per:
            emb = getattr(model, "embedding", None)
            per[key] = {"embedding_lookups": lookups_per_example(b, emb.extra_lookups(b) if emb is not None else 0),
                        "model_flops_forward": flops_per_example(model, b)}
        if set(per) >= set(rows_per_segment):
            break
    total = sum(rows_per_segment[s] for s in per) or 1
    overall = {k: sum(per[s][k] * rows_per_segment[s] for s in per) / total
               for k in ("embedding_lookups", "model_flops_forward")} if per else {}
    return {"overall": overall, "per_segment": per}


def cost_per_example(model: torch.nn.Module, loader, batches: Iterable[Batch]) -> dict:
    """The three costs for ``loader``'s (policy, days): ``{"bytes_read", "embedding_lookups",
    "model_flops_forward"}`` overall, and the same per segment."""
    rows = {str(s): sum(spec.file_rows) for s, spec in loader.segments.items()}
    by = bytes_read_per_example(loader.segments)
    mc = model_costs(model, batches, rows)
    out = {"bytes_read": by["overall"], **mc["overall"], "per_segment": {}}
    for s in rows:
        out["per_segment"][s] = {"bytes_read": by["per_segment"].get(s), **mc["per_segment"].get(s, {})}
    return out
