"""Rank 0's running view of a training run: TensorBoard scalars and the progress bar (``training/train.py``)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from training.metrics import binary_entropy


class TrainLog:
    """Rank 0's running view of training: TensorBoard scalars every ``log_every`` steps and the progress bar.

    ``train/ne`` is eq. 10 over rank 0's batches since the last log point (its own base rate), ``train/loss``
    their mean loss (log loss + regularization), ``train/samples_per_s`` all ranks' samples over the wall time
    since the last log point (evaluation included when one fell in it)."""

    def __init__(self, out_dir: Path, log_every: int, total_steps: int, step: int, samples_per_step: int,
                 desc: str) -> None:
        from tqdm import tqdm

        self.log_every, self.samples_per_step = log_every, samples_per_step
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # the lean GPU wheelhouse (bench/gpu.sh without --full) has no tensorboard
            print(f"[train] no TensorBoard event files: {e}", file=sys.stderr, flush=True)
        else:  # purge_step: after --resume, TensorBoard drops the interrupted run's events from this step on
            self.writer = SummaryWriter(log_dir=str(out_dir), purge_step=step or None)
        self.progress = tqdm(total=total_steps * samples_per_step, initial=step * samples_per_step, unit="sample",
                             unit_scale=True, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty())
        self._reset(step)

    def _reset(self, step: int) -> None:
        self.n, self.n_pos, self.ll_sum, self.loss_sum, self.steps = 0, 0.0, 0.0, 0.0, 0
        self.step0, self.t0 = step, time.perf_counter()

    def update(self, step: int, loss: torch.Tensor, y: torch.Tensor, p: torch.Tensor) -> None:
        y64, p64 = y.double(), p.double().clamp(1e-7, 1 - 1e-7)
        self.n += int(y64.numel())
        self.n_pos += float(y64.sum())
        self.ll_sum += float(-(y64 * p64.log() + (1 - y64) * (-p64).log1p()).sum())
        self.loss_sum += float(loss)
        self.steps += 1
        self.progress.update(self.samples_per_step)
        if step % self.log_every == 0:
            h = binary_entropy(self.n_pos / self.n)
            ne = self.ll_sum / self.n / h if h > 0 else float("nan")
            rate = (step - self.step0) * self.samples_per_step / max(time.perf_counter() - self.t0, 1e-9)
            self.scalars(step, {"train/loss": self.loss_sum / self.steps, "train/ne": ne,
                                "train/samples_per_s": rate})
            self.progress.set_postfix(step=step, loss=f"{self.loss_sum / self.steps:.4f}", ne=f"{ne:.4f}",
                                      refresh=False)
            self._reset(step)

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if v is not None:
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.progress.close()
        if self.writer is not None:
            self.writer.close()
