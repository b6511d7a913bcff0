"""Training end to end from a real Delta table written here: 2-process DDP with gloo (torchrun), NE against
numpy, and resume from a checkpoint giving the same parameters as an uninterrupted run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from schemas.ebf import EBF_EXAMPLES, EBF_SOURCES, TARGET_COLUMNS, seq_col

DAYS = ("2026-11-01", "2026-11-02")
N = 4
ROWS_PER_PARTITION = 320


def _rows():
    """Baseline-policy rows; the label is a function of the target category (learnable), 25% positive."""
    rng = np.random.default_rng(3)
    out = []
    for ds in DAYS:
        for seg in (0, 1):
            for i in range(ROWS_PER_PARTITION):
                cat = int(rng.integers(1, 41))
                r = {"user_id": int(rng.integers(1, 500)), "event_ts_us": int(1_793_500_000_000_000 + i),
                     "label": int(cat % 4 == 0), "segment_window_end_us": None, "ds": ds, "policy": "baseline",
                     "segment": seg}
                for c in TARGET_COLUMNS:
                    r[c] = int(rng.integers(1, 50))
                r["tgt_category_id"] = cat
                length = int(rng.integers(0, N + 1))
                for src, attrs in EBF_SOURCES.items():
                    r[f"{src}_len"] = length if src == "ad" else 0
                    for a in attrs:
                        r[seq_col(src, a)] = ([int(x) for x in rng.integers(1, 99, length)] + [0] * (N - length)
                                              if src == "ad" else None)
                out.append(r)
    return out


@pytest.fixture(scope="module")
def ebf_table(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    path = str(root / "ebf_examples")
    rows = _rows()
    (spark.createDataFrame([tuple(r[f.name] for f in EBF_EXAMPLES.fields) for r in rows], EBF_EXAMPLES)
     .repartition(2).write.format("delta").partitionBy("ds", "policy", "segment").save(path))
    return root, path, rows


def _overrides(root: Path, **extra) -> list[str]:
    base = {
        "paths.lake_root": str(root), "ebf.seq_len": json.dumps({"ad": N, "organic": N, "page": N}),
        "model.hash_buckets": 101, "model.embed_dim": 8, "model.num_layers": 2, "model.rank": 2,
        "model.subspaces": 2, "train.batch_size": 32, "train.lr": 0.01, "train.eval_every": 4,
        "train.checkpoint_every": 4, "train.workers": 1, "train.shuffle_buffer": 64, "train.policy": "baseline",
        "train.early_stopping_patience": 100, "train.epochs": 5, "spark.conf": "{}",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _run(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(ROOT / "training" / "train.py"), *args]
    else:
        cmd = [sys.executable, str(ROOT / "training" / "train.py"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    return res


def _ne(y: np.ndarray, p: np.ndarray) -> float:
    """DynamiX eq. 10 written out: mean log loss over the entropy of the base rate."""
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    ll = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    q = y.mean()
    return ll / -(q * math.log(q) + (1 - q) * math.log(1 - q))


def test_ddp_two_ranks_same_steps_equal_parameters_and_ne(ebf_table):
    root, path, rows = ebf_table
    out = root / "run_ddp"
    _run(["--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out),
          *_overrides(root, **{"train.max_steps": 12})], nproc=2)
    r0 = json.loads((out / "rank_0.json").read_text())
    r1 = json.loads((out / "rank_1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["steps"] == r1["steps"] == 12
    assert r0["param_sum"] == r1["param_sum"] and r0["param_abs_sum"] == r1["param_abs_sum"]
    rep = json.loads((out / "report.json").read_text())
    assert rep["world_size"] == 2 and rep["eval_days"] == [DAYS[1]] and rep["train_days"] == [DAYS[0]]
    assert rep["delta_version"] == 0
    pred = np.load(out / "eval_predictions.npz")
    # every evaluation row is a row of the last day that the test wrote (full batches of 32 per segment)
    n_eval = sum(1 for r in rows if r["ds"] == DAYS[1])
    assert len(pred["label"]) == n_eval  # every row of the evaluation day, scored once
    assert rep["eval"]["ne"] == pytest.approx(_ne(pred["label"], pred["p"]), rel=1e-6)
    assert set(np.unique(pred["segment"])) == {0, 1}
    for key in ("train_samples_per_s", "inference_samples_per_s", "loader_samples_per_s"):
        assert rep[key] and rep[key] > 0
    assert (out / "ne_curve.png").stat().st_size > 0 and (out / "summary.md").exists()


def test_resume_continues_at_saved_step_with_same_result(ebf_table):
    root, _, _ = ebf_table
    conf = ["--config", str(ROOT / "conf" / "local.yaml")]
    full, part = root / "run_full", root / "run_part"
    _run([*conf, "--out", str(full), *_overrides(root, **{"train.max_steps": 12})])
    _run([*conf, "--out", str(part), *_overrides(root, **{"train.max_steps": 8})])
    assert json.loads((part / "rank_0.json").read_text())["steps"] == 8
    _run([*conf, "--out", str(part), "--resume", *_overrides(root, **{"train.max_steps": 12})])
    a = json.loads((full / "rank_0.json").read_text())
    b = json.loads((part / "rank_0.json").read_text())
    assert b["steps"] == 12
    assert b["param_sum"] == pytest.approx(a["param_sum"], rel=1e-9, abs=1e-9)
    assert b["param_abs_sum"] == pytest.approx(a["param_abs_sum"], rel=1e-9)
    curve = json.loads((part / "report.json").read_text())["curve"]
    assert [c["step"] for c in curve] == [4, 8, 12]  # evaluations before the stop survive the resume


def test_learns_the_planted_signal(ebf_table):
    root, _, _ = ebf_table
    out = root / "run_learn"
    _run(["--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out),
          *_overrides(root, **{"train.max_steps": 60, "train.epochs": 10, "model.variant": "xdeepint",
                               "train.eval_every": 20})])
    rep = json.loads((out / "report.json").read_text())
    assert rep["eval"]["ne"] < 0.9  # a constant predictor at the base rate has NE 1
