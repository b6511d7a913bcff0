"""Binary CTR metrics: log loss, normalized entropy (DynamiX eq. 10) and rank AUC, plus a streaming
accumulator that ranks can merge.

Everything is computed in float64 numpy. Inputs may be numpy arrays, lists or torch tensors (any device);
``p`` are predicted probabilities, ``y`` labels in {0, 1}.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

# Probabilities are clipped to [EPS, 1 - EPS] before taking logs: a float32 sigmoid can return exactly 0 or 1.
EPS = 1e-7


def _as_f64(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch.Tensor, without importing torch here
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _log_loss_sum(y: np.ndarray, p: np.ndarray, eps: float) -> float:
    p = np.clip(p, eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).sum())


def binary_entropy(base_rate: float) -> float:
    """-(p log p + (1 - p) log(1 - p)) in nats; 0 when ``base_rate`` is 0 or 1."""
    if base_rate <= 0.0 or base_rate >= 1.0:
        return 0.0
    return -(base_rate * math.log(base_rate) + (1.0 - base_rate) * math.log(1.0 - base_rate))


def log_loss(y, p, eps: float = EPS) -> float:
    """Mean binary cross-entropy (nats); nan for no examples."""
    y, p = _as_f64(y), _as_f64(p)
    return _log_loss_sum(y, p, eps) / y.size if y.size else float("nan")


def normalized_entropy(y, p, eps: float = EPS) -> float:
    """DynamiX eq. 10: mean log loss divided by the entropy of the empirical base rate p̂ = mean(y).

    1.0 is the score of always predicting p̂; lower is better. nan when p̂ is 0 or 1 (no entropy to
    normalise by) or there are no examples.
    """
    y, p = _as_f64(y), _as_f64(p)
    if not y.size:
        return float("nan")
    h = binary_entropy(float(y.mean()))
    return _log_loss_sum(y, p, eps) / y.size / h if h > 0 else float("nan")


def auc(y, p) -> float:
    """ROC AUC by the Mann-Whitney rank statistic, tied scores getting their average rank.

    Equals P(score of a random positive > score of a random negative) + 0.5 P(tie). nan when either class
    is empty. O(n log n).
    """
    y, p = _as_f64(y), _as_f64(p)
    n_pos = float((y > 0.5).sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    # Ranks are 1-based; a tie group occupying ranks a..b gets (a + b) / 2.
    ends = np.cumsum(counts).astype(np.float64)
    avg_rank = ends - (counts - 1) / 2.0
    rank_sum_pos = float(avg_rank[inverse][y > 0.5].sum())
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


class BinaryMetrics:
    """Streaming accumulator for log loss, NE and AUC over many batches.

    NE and log loss need only three sums (``sums()``: examples, positives, summed log loss), which ranks can
    add up; AUC needs every (y, p) pair, kept as arrays (``arrays()``). ``merge`` adds another accumulator's
    state; ``all_gather`` merges the state of every rank of an initialised ``torch.distributed`` group.
    """

    def __init__(self, eps: float = EPS) -> None:
        self.eps = eps
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.n_pos = 0.0
        self.log_loss_sum = 0.0
        self.p_sum = 0.0
        self._y: list[np.ndarray] = []
        self._p: list[np.ndarray] = []

    def update(self, y, p) -> None:
        y, p = _as_f64(y), _as_f64(p)
        if y.shape != p.shape:
            raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in shape")
        self.n += int(y.size)
        self.n_pos += float(y.sum())
        self.log_loss_sum += _log_loss_sum(y, p, self.eps)
        self.p_sum += float(p.sum())
        self._y.append(y)
        self._p.append(p)

    def sums(self) -> np.ndarray:
        """[n, n_pos, log_loss_sum, p_sum] as float64: what an all-reduce (sum) needs for NE and log loss."""
        return np.array([self.n, self.n_pos, self.log_loss_sum, self.p_sum], dtype=np.float64)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All labels and predictions seen so far (for AUC)."""
        if not self._y:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._y), np.concatenate(self._p)

    def merge(self, other: "BinaryMetrics") -> "BinaryMetrics":
        self.n += other.n
        self.n_pos += other.n_pos
        self.log_loss_sum += other.log_loss_sum
        self.p_sum += other.p_sum
        self._y += other._y
        self._p += other._p
        return self

    def all_gather(self) -> "BinaryMetrics":
        """A new accumulator holding every rank's state (this one's alone without torch.distributed)."""
        import torch.distributed as dist

        merged = BinaryMetrics(self.eps)
        if not (dist.is_available() and dist.is_initialized()):
            return merged.merge(self)
        states: list = [None] * dist.get_world_size()
        dist.all_gather_object(states, (self.sums(), *self.arrays()))
        for s, y, p in states:
            part = BinaryMetrics(self.eps)
            part.n, part.n_pos, part.log_loss_sum, part.p_sum = int(s[0]), float(s[1]), float(s[2]), float(s[3])
            part._y, part._p = [y], [p]
            merged.merge(part)
        return merged

    def compute(self) -> dict[str, float]:
        """{"n", "base_rate", "log_loss", "ne", "auc", "calibration"} (calibration = mean p / base rate)."""
        if self.n == 0:
            nan = float("nan")
            return {"n": 0, "base_rate": nan, "log_loss": nan, "ne": nan, "auc": nan, "calibration": nan}
        base_rate = self.n_pos / self.n
        ll = self.log_loss_sum / self.n
        h = binary_entropy(base_rate)
        y, p = self.arrays()
        return {
            "n": self.n,
            "base_rate": base_rate,
            "log_loss": ll,
            "ne": ll / h if h > 0 else float("nan"),
            "auc": auc(y, p),
            "calibration": (self.p_sum / self.n) / base_rate if base_rate > 0 else float("nan"),
        }
