"""Scoring a trained model on the evaluation rows (``training/train.py`` calls these on rank 0).

:func:`evaluate`: NE overall and per segment (eq. 10), AUC, log loss and the scoring rate over a stream of
batches; :func:`evaluate_prefix` on the first N evaluation batches; :func:`logreg_baseline`, the sanity baseline
on the target features (``training/baseline.py``) fitted on the rows the model trained on; the loader's and the
model's own rates (:func:`measure_loader_rate`, :func:`measure_model_inference_rate`) for the report.
"""
from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path
from typing import Iterable

import torch

from dynamix_spark.config import Config
from training import baseline as lr_baseline
from training.batch import Batch
from training.delta_snapshot import DeltaSnapshot
from training.loader import EbfLoader
from training.metrics import BinaryMetrics


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[Batch], device: torch.device,
             keep_predictions: Path | None = None) -> dict:
    """Score every batch; NE overall and per segment, AUC, log loss, samples/s of scoring (loader included).

    ``keep_predictions``: also save (label, p, segment) as ``.npz`` (for independent checks and plots).
    """
    model.eval()
    overall, per_seg = BinaryMetrics(), {}
    n, t0 = 0, time.perf_counter()
    kept: list[tuple] = []
    for b in batches:
        b = b.to(device, non_blocking=True)
        with autocast(device):
            p = torch.sigmoid(model(b).float())
        y = b.label.float()
        overall.update(y, p)
        per_seg.setdefault(b.segment, BinaryMetrics()).update(y, p)
        n += len(b)
        if keep_predictions is not None:
            kept.append((y.cpu().numpy(), p.cpu().numpy(), b.segment))
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    model.train()
    if keep_predictions is not None and kept:
        import numpy as np

        keep_predictions.parent.mkdir(parents=True, exist_ok=True)
        np.savez(keep_predictions, label=np.concatenate([k[0] for k in kept]), p=np.concatenate([k[1] for k in kept]),
                 segment=np.concatenate([np.full(len(k[0]), k[2]) for k in kept]))
    out = overall.compute()
    out["per_segment"] = {str(s): m.compute() for s, m in sorted(per_seg.items())}
    out.update(samples=n, seconds=secs, samples_per_s=n / secs if secs > 0 else None)
    return out


def evaluate_prefix(model, eval_loader: EbfLoader, max_batches: int, device: torch.device, **kw) -> dict:
    """evaluate() on the first ``max_batches`` evaluation batches (0: all); close() stops the readers."""
    batches = eval_loader.iter_epoch(0)
    with contextlib.closing(batches):
        return evaluate(model, itertools.islice(batches, max_batches) if max_batches else batches, device, **kw)


def headline(ev: dict) -> dict:
    return {k: ev[k] for k in ("ne", "auc", "log_loss", "n", "base_rate")}


def logreg_baseline(cfg: Config, table: str, snapshot: DeltaSnapshot, train_days: list[str],
                    eval_loader: EbfLoader, train_batches: int) -> dict:
    """The logistic regression on target features (training/baseline.py): fitted on the rows DynInt trained on
    in its first epoch (the same seeded order, one shard; at most ``train.logreg_max_rows``), scored on the
    same evaluation rows as the reported model."""
    tc, buckets = cfg.train, cfg.model.hash_buckets
    t0 = time.perf_counter()
    rows_loader = EbfLoader.from_config(table, None, cfg, train_days, snapshot=snapshot)
    batches = rows_loader.iter_epoch(0)
    with contextlib.closing(batches):
        x, y = lr_baseline.collect(itertools.islice(batches, max(1, train_batches)), buckets, tc.logreg_max_rows)
    fit = lr_baseline.fit_logreg(x, y, tc.logreg_l2)
    evb = eval_loader.iter_epoch(0)
    with contextlib.closing(evb):
        ev = lr_baseline.score(fit, itertools.islice(evb, tc.final_eval_max_batches) if tc.final_eval_max_batches
                               else evb, buckets)
    return {**headline(ev), "train_rows": fit.train_rows,
            "lbfgs_iterations": fit.iterations, "l2": tc.logreg_l2, "seconds": time.perf_counter() - t0,
            "features": "target ids (tgt_*) mod model.hash_buckets, one-hot per field, and a bias"}


def measure_loader_rate(loader: EbfLoader, n_batches: int) -> float | None:
    n, t0 = 0, time.perf_counter()
    for i, b in enumerate(loader.iter_epoch(10_000)):
        n += len(b)
        if i + 1 >= n_batches:
            break
    secs = time.perf_counter() - t0
    return n / secs if secs > 0 and n else None


@torch.no_grad()
def measure_model_inference_rate(model, eval_loader: EbfLoader, device: torch.device, max_batches: int = 20) -> float | None:
    """Scoring from batches already on the device: the model's own inference samples/s."""
    batches = []
    for b in eval_loader.iter_epoch(0):
        batches.append(b.to(device))
        if len(batches) >= max_batches:
            break
    if not batches:
        return None
    model.eval()
    with autocast(device):
        model(batches[0])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        n = 0
        for b in batches:
            model(b)
            n += len(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
    model.train()
    return n / (time.perf_counter() - t0)
