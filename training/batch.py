"""The typed batch the loader yields and the model reads.

A batch is homogeneous in policy and segment: ``seqs`` holds only the sequence columns present for that
(policy, segment), so a removed attribute is neither read nor embedded nor pooled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    targets: dict[str, torch.Tensor]  # "tgt_<attr>" -> int64 [B]
    seqs: dict[str, torch.Tensor]  # "<src>_seq_<attr>" -> int64 [B, N_src]; only the present columns
    lengths: dict[str, torch.Tensor]  # "<src>" -> int64 [B] (0..N_src); only sources with a present column
    label: torch.Tensor  # float32 [B]
    policy: str = "baseline"
    segment: int = 0
    meta: dict[str, torch.Tensor] = field(default_factory=dict)  # user_id, event_ts_us (not model inputs)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def _map(self, fn) -> "Batch":
        return Batch(
            targets={k: fn(v) for k, v in self.targets.items()},
            seqs={k: fn(v) for k, v in self.seqs.items()},
            lengths={k: fn(v) for k, v in self.lengths.items()},
            label=fn(self.label),
            policy=self.policy,
            segment=self.segment,
            meta={k: fn(v) for k, v in self.meta.items()},
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        return self._map(lambda t: t.pin_memory())
