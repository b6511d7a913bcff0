"""The logistic-regression baseline of the training report (training/baseline.py) against an independent
numpy Newton fit of the same objective on a dense one-hot design over every hash bucket (so the claim that
an id unseen in training has weight 0 is checked, not assumed). Training side (torch, no PySpark)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from schemas.ebf import TARGET_COLUMNS
from training.baseline import collect, fit_logreg, score
from training.batch import Batch

BUCKETS = 7
F = len(TARGET_COLUMNS)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw target ids (before the mod) and labels that depend on two fields."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 1000, size=(n, F))
    z = -1.0 + 0.8 * (raw[:, 0] % BUCKETS == 3) - 0.6 * (raw[:, 3] % BUCKETS < 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return raw, y


def _batches(raw: np.ndarray, y: np.ndarray, size: int) -> list[Batch]:
    out = []
    for i in range(0, len(y), size):
        out.append(Batch(targets={c: torch.from_numpy(raw[i:i + size, f]) for f, c in enumerate(TARGET_COLUMNS)},
                         seqs={}, lengths={}, label=torch.from_numpy(y[i:i + size]).float()))
    return out


def newton_logreg(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Minimise mean logloss + l2/2 |w|^2 (bias, the last column, not penalised) by Newton's method."""
    theta = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-x @ theta))
        g = x.T @ (p - y) / len(y) + reg * theta
        h = (x * (p * (1 - p))[:, None]).T @ x / len(y) + np.diag(reg)
        step = np.linalg.solve(h, g)
        theta -= step
        if np.abs(step).max() < 1e-13:
            break
    return theta


def one_hot(raw: np.ndarray, buckets: int = BUCKETS) -> np.ndarray:
    """Dense design: one column per (field, bucket), all buckets, and a last column of ones (the bias)."""
    ids = raw % buckets
    x = np.zeros((len(raw), F * buckets + 1))
    for f in range(F):
        x[np.arange(len(raw)), f * buckets + ids[:, f]] = 1.0
    x[:, -1] = 1.0
    return x


def _ne(y: np.ndarray, p: np.ndarray) -> float:
    ll = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    q = y.mean()
    return ll / -(q * math.log(q) + (1 - q) * math.log(1 - q))


def test_logreg_matches_an_independent_newton_fit():
    raw, y = _data(600, seed=1)
    raw[:, 5] = raw[:, 5] - raw[:, 5] % BUCKETS  # field 5: only bucket 0 in training, so buckets 1-6 unseen
    eraw, ey = _data(300, seed=2)  # field 5 takes every bucket here
    l2 = 1e-2
    x, yy = collect(_batches(raw, y, 64), BUCKETS, max_rows=10_000)
    assert x.shape == (600, F) and np.array_equal(x, raw % BUCKETS) and np.array_equal(yy, y)
    fit = fit_logreg(x, yy, l2)
    theta = newton_logreg(one_hot(raw), y, l2)
    ref_p = 1 / (1 + np.exp(-one_hot(eraw) @ theta))
    np.testing.assert_allclose(fit.predict(eraw % BUCKETS), ref_p, rtol=1e-6, atol=1e-9)
    assert np.allclose(theta[5 * BUCKETS + 1:6 * BUCKETS], 0.0, atol=1e-12)  # unseen ids: weight 0 at the optimum
    got = score(fit, _batches(eraw, ey, 50), BUCKETS)
    assert got["n"] == 300
    assert got["ne"] == pytest.approx(_ne(ey, ref_p), rel=1e-6)


def test_collect_stops_at_max_rows():
    raw, y = _data(200, seed=3)
    x, yy = collect(_batches(raw, y, 64), BUCKETS, max_rows=100)
    assert len(x) == len(yy) == 100 and np.array_equal(x, raw[:100] % BUCKETS)


def test_no_rows_is_an_error():
    with pytest.raises(ValueError, match="no training rows"):
        fit_logreg(np.zeros((0, F), np.int64), np.zeros(0), 1e-3)
