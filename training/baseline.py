"""The sanity baseline of every training report: a logistic regression on the target features.

Features: the same hashed target ids DynInt embeds (``tgt_*`` mod ``model.hash_buckets``), one-hot per field,
plus a bias; no sequences. Objective, convex with a unique optimum:

    mean_i logloss(y_i, sigmoid(b + sum_f w[f, id_if]))  +  l2 / 2 * sum(w ** 2)       (b not penalised)

fitted full batch in float64 with L-BFGS (strong Wolfe line search) to convergence, so the result does not
depend on batch order or a learning rate, and a numpy Newton fit of the same objective reproduces it
(tests/test_baseline.py). Only (field, id) pairs seen in the training rows get a weight: an unseen id's
optimal weight is exactly 0 under the L2 term, so this equals the full hashed model at a fraction of the size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from schemas.ebf import TARGET_COLUMNS
from training.batch import Batch
from training.metrics import BinaryMetrics


def target_ids(batch: Batch, hash_buckets: int) -> np.ndarray:
    """[B, F] int64: the batch's target ids mod ``hash_buckets`` in :data:`TARGET_COLUMNS` order."""
    return np.stack([batch.targets[c].cpu().numpy().astype(np.int64) % hash_buckets for c in TARGET_COLUMNS], 1)


@dataclass
class LogisticRegression:
    """A fitted model: per field, the sorted seen ids and their weights; the bias."""
    ids: list[np.ndarray]  # per field: sorted unique ids seen in training
    weights: list[np.ndarray]  # per field: float64 weight of each id in ``ids``
    bias: float
    iterations: int
    train_rows: int

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x [n, F] ids -> logits [n]; an id not seen in training contributes 0."""
        out = np.full(len(x), self.bias, dtype=np.float64)
        for f, (ids, w) in enumerate(zip(self.ids, self.weights)):
            pos = np.searchsorted(ids, x[:, f])
            pos = np.minimum(pos, len(ids) - 1)
            hit = ids[pos] == x[:, f]
            out += np.where(hit, w[pos], 0.0)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(x)))


def fit_logreg(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 500) -> LogisticRegression:
    """Fit the objective above on ids x [n, F] and labels y [n] (0/1)."""
    if len(x) == 0:
        raise ValueError("logistic-regression baseline: no training rows")
    y = np.asarray(y, dtype=np.float64)
    ids, cols, offset = [], [], 0
    for f in range(x.shape[1]):
        u, inv = np.unique(x[:, f], return_inverse=True)
        ids.append(u)
        cols.append(torch.from_numpy(inv.reshape(-1) + offset))
        offset += len(u)
    idx = torch.stack(cols, 1)  # [n, F] into one weight vector of ``offset`` entries
    yt = torch.from_numpy(y)
    w = torch.zeros(offset, dtype=torch.float64, requires_grad=True)
    q = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    b = torch.tensor(np.log(q / (1 - q)), dtype=torch.float64, requires_grad=True)  # starts at the base rate
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def closure():
        opt.zero_grad()
        loss = loss_fn(b + w[idx].sum(1), yt) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    iters = int(opt.state[opt._params[0]].get("n_iter", 0))
    wn = w.detach().numpy()
    bounds = np.cumsum([0] + [len(u) for u in ids])
    return LogisticRegression(ids=ids, weights=[wn[bounds[f]:bounds[f + 1]].copy() for f in range(len(ids))],
                              bias=float(b.detach()), iterations=iters, train_rows=len(x))


def collect(batches: Iterable[Batch], hash_buckets: int, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Target ids and labels of the batches, up to ``max_rows`` rows."""
    xs, ys, n = [], [], 0
    for b in batches:
        xs.append(target_ids(b, hash_buckets))
        ys.append(b.label.cpu().numpy().astype(np.float64))
        n += len(b)
        if n >= max_rows:
            break
    if not xs:
        return np.zeros((0, len(TARGET_COLUMNS)), np.int64), np.zeros(0)
    return np.concatenate(xs)[:max_rows], np.concatenate(ys)[:max_rows]


def score(model: LogisticRegression, batches: Iterable[Batch], hash_buckets: int) -> dict:
    """NE, AUC, log loss of the model over the batches (the same metrics as DynInt's evaluation)."""
    m = BinaryMetrics()
    for b in batches:
        m.update(b.label.cpu().numpy(), model.predict(target_ids(b, hash_buckets)))
    return m.compute()


__all__ = ["LogisticRegression", "fit_logreg", "collect", "score", "target_ids"]
