"""bench/planted_ceiling.py's counting models and logistic fit (issue 20), on hand-built rows whose NE is computed
here from the binary entropy of the planted rates, not from the code under test."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("planted_ceiling", ROOT / "bench" / "planted_ceiling.py")
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)


def _h(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _rows(n: int = 2000) -> dict[str, np.ndarray]:
    """Active rows: an organic match converts at 0.4, no match at 0.1. Passive rows: 0.2 either way."""
    organic, label, active = [], [], []
    for seg, rates in ((True, (0.1, 0.4)), (False, (0.2, 0.2))):
        for match, rate in enumerate(rates):
            organic += [match] * n
            label += [1.0] * round(rate * n) + [0.0] * (n - round(rate * n))
            active += [seg] * n
    m = len(label)
    zeros = np.zeros(m, dtype=np.int64)
    return {"label": np.array(label), "active": np.array(active), "ad_len": zeros + 3, "same_ad": zeros,
            "ad_cat": zeros, "organic_cat": np.array(organic), "page_cat": zeros}


def test_counting_models_score_the_planted_rates():
    rows = _rows()
    r = pc.ceiling(rows, rows)
    active_base = 0.25  # (0.1 + 0.4) / 2
    # Active: the organic match splits the rows into rates 0.4 and 0.1; without it, one rate, 0.25.
    assert r["active"]["ad + organic same category"] == pytest.approx((_h(0.4) + _h(0.1)) / 2 / _h(active_base),
                                                                     abs=2e-3)
    assert r["active"]["ad history: + same category"] == pytest.approx(1.0, abs=2e-3)
    assert r["active"]["ad + page same category"] == pytest.approx(1.0, abs=2e-3)
    # Passive: no signal in any count.
    assert r["passive"]["ad + organic + page"] == pytest.approx(1.0, abs=2e-3)
    assert r["active"]["examples"] == 4000 and r["active"]["base_rate"] == pytest.approx(active_base)


def test_logistic_fit_recovers_known_weights():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(200_000), rng.normal(size=200_000), rng.integers(0, 2, 200_000)])
    w_true = np.array([-2.0, 1.5, 0.7])
    y = (rng.random(200_000) < 1 / (1 + np.exp(-(x @ w_true)))).astype(float)
    assert pc._logistic(x, y) == pytest.approx(w_true, abs=0.05)
