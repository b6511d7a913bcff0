"""Permutation importance of the ad EBF attributes (issue 20, ``training/importance.py``).

A training-side test. The unit part scores hand-made batches with a model that reads one known attribute:
the attributes it does not read must show exactly no NE change, the one it reads a clear loss. The end-to-end
part writes a Delta table with delta-spark (``tests/seam_spark.py``) whose label depends on one ad attribute
only, trains on it with ``training/train.py`` and runs the command on the run folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from seam_data import IMPORTANCE_SIGNAL, TRAIN_N, importance_rows
from seam_spark import spark_steps
from schemas.ebf import EBF_SOURCES, TARGET_COLUMNS, seq_col
from training.batch import Batch
from training.importance import AD_ATTRIBUTES, permutation_importance


class _ReadsOne(torch.nn.Module):
    """logit = 4 * (2 * (first id of ad_seq_<attr> is even) - 1): reads that column and nothing else."""

    def __init__(self, attr: str):
        super().__init__()
        self.col = seq_col("ad", attr)

    def forward(self, b: Batch) -> torch.Tensor:
        return 4.0 * (2.0 * (b.seqs[self.col][:, 0] % 2 == 0).float() - 1.0)


def _batches(n_batches: int = 6, size: int = 64, n: int = 5):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n_batches):
        seqs = {seq_col("ad", a): torch.from_numpy(rng.integers(1, 99, (size, n))) for a in AD_ATTRIBUTES}
        label = (seqs[seq_col("ad", "campaign_id")][:, 0] % 2 == 0).float()
        out.append(Batch(targets={c: torch.from_numpy(rng.integers(1, 50, size)) for c in TARGET_COLUMNS},
                         seqs=seqs, lengths={"ad": torch.full((size,), n)}, label=label, segment=i % 2))
    return out


def test_unread_attributes_change_nothing_and_the_read_one_costs():
    batches = _batches()
    res = permutation_importance(_ReadsOne("campaign_id"), lambda: iter(batches), seed=3)
    assert set(res["attributes"]) == set(AD_ATTRIBUTES) and len(AD_ATTRIBUTES) == 11
    for a in AD_ATTRIBUTES:
        if a != "campaign_id":
            assert res["attributes"][a]["delta_ne"] == 0.0, a
            assert all(v == 0.0 for v in res["attributes"][a]["delta_ne_per_segment"].values()), a
    # permuted, the read column predicts a random label: about half wrong at p = sigmoid(4), NE far above base
    assert res["attributes"]["campaign_id"]["delta_ne"] > 1.0
    assert set(res["attributes"]["campaign_id"]["delta_ne_per_segment"]) == {"0", "1"}
    assert res["ranking"][-1] == "campaign_id"
    assert res["base"]["rows"] == 6 * 64


def test_standard_error_by_hand_and_zero_for_unread_attributes():
    from training.importance import clustered_se

    # two batches of one row, changes 1 and 3: mean 2, sqrt(2 / 1 * (1 + 1)) / 2 = 1
    assert clustered_se([1.0, 3.0], [1, 1]) == pytest.approx(1.0)
    # equal batches: the usual standard error of the per-batch means (sample std / sqrt(k))
    rng = np.random.default_rng(1)
    d = rng.normal(size=7) * 64
    assert clustered_se(d, [64] * 7) == pytest.approx(np.std(d / 64, ddof=1) / np.sqrt(7))
    assert np.isnan(clustered_se([1.0], [5]))
    res = permutation_importance(_ReadsOne("campaign_id"), lambda: iter(_batches()), seed=3)
    for a in AD_ATTRIBUTES:
        se = res["attributes"][a]["se_delta_ne"]
        assert (se > 0) if a == "campaign_id" else (se == 0.0), (a, se)
    # the read attribute's change is far beyond its standard error
    assert res["attributes"]["campaign_id"]["delta_ne"] > 5 * res["attributes"]["campaign_id"]["se_delta_ne"]


def test_permutation_is_cut_to_the_receiving_rows_length():
    """Ids beyond a row's own length are padding after the permutation (the model pools with the source's
    lengths): a model summing the ids inside each row's length sees only the donors' first positions."""
    from training.importance import _permuted_lengths

    ids = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 0, 0]])
    lengths = torch.tensor([3, 2, 1])
    b = Batch(targets={}, seqs={"ad_seq_ad_id": ids}, lengths={"ad": lengths}, label=torch.zeros(3))
    out = _permuted_lengths(b, "ad_seq_ad_id", np.random.default_rng(0))
    got = out.seqs["ad_seq_ad_id"]
    for i in range(3):
        assert (got[i, lengths[i]:] == 0).all()
    assert sorted(map(tuple, got[:, :1].tolist())) == [(1,), (4,), (6,)]
    assert torch.equal(b.seqs["ad_seq_ad_id"], ids)  # the batch itself is not changed


def test_command_ranks_the_planted_attribute_most_important(tmp_path):
    path = str(tmp_path / "ebf_examples")
    spark_steps([{"op": "write_ebf", "rows": importance_rows(), "path": path, "repartition": 2}])
    over = {"paths.lake_root": str(tmp_path), "ebf.seq_len": json.dumps({"ad": TRAIN_N, "organic": TRAIN_N,
                                                                         "page": TRAIN_N}),
            "model.hash_buckets": 101, "model.embed_dim": 8, "model.num_layers": 1, "model.rank": 2,
            "model.subspaces": 2, "train.batch_size": 32, "train.lr": 0.03, "train.eval_every": 20,
            "train.max_steps": 60, "train.epochs": 5, "train.workers": 1, "train.shuffle_buffer": 64,
            "train.policy": "baseline", "train.early_stopping_patience": 100, "train.logreg_baseline": "false",
            "train.final_eval_max_batches": 0, "spark.conf": "{}"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = tmp_path / "run"
    sets = [x for k, v in over.items() for x in ("--set", f"{k}={v}")]
    res = subprocess.run([sys.executable, str(ROOT / "training" / "train.py"), "--config",
                          str(ROOT / "conf" / "local.yaml"), "--table", path, "--out", str(run), *sets],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["eval"]["ne"] < 0.7  # it learned the planted rule
    # the report's cost per example (training/costs.py): baseline reads the 11 ad sequences of TRAIN_N ids, and
    # (model.target_match, on in conf/local.yaml since 2026-12-04) looks up the ad source's match field once, and
    # (model.id_match, on since 2026-12-04 night) each of the 4 id match fields (ad, campaign, advertiser, semantic)
    cost = report["cost_per_example"]
    assert cost["embedding_lookups"] == len(TARGET_COLUMNS) + 11 * TRAIN_N + 1 + 4
    assert cost["bytes_read"] > 11 * TRAIN_N and cost["model_flops_forward"] > 0
    res = subprocess.run([sys.executable, "-m", "training.importance", "--run", str(run)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    imp = json.loads((run / "feature_importance.json").read_text())
    assert imp["ranking"][-1] == IMPORTANCE_SIGNAL
    signal = imp["attributes"][IMPORTANCE_SIGNAL]["delta_ne"]
    noise = [imp["attributes"][a]["delta_ne"] for a in EBF_SOURCES["ad"] if a != IMPORTANCE_SIGNAL]
    assert signal > 0.2 and max(abs(x) for x in noise) < signal / 4, imp["attributes"]
    assert imp["base"]["rows"] == 640  # the whole evaluation day: 2 segments x 320 rows
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("--set ebf.low_importance_attributes=[") and IMPORTANCE_SIGNAL not in last
    from dynamix_spark.config import load_config

    cfg = load_config(ROOT / "conf" / "local.yaml", [last.split(" ", 1)[1]])  # the printed override loads
    assert len(cfg.ebf.low_importance_attributes) == 4
