"""How much NE the planted mechanism puts within reach of each EBF source: counting models on ``ebf_examples``.

    .venv/bin/python bench/planted_ceiling.py --lake data/lake --train-ds 2026-11-02 --eval-ds 2026-11-03 [--out F.json]

A check of the data, not of the model (issue 20): an arm can only gain what its sources carry. For every example
of ``--policy`` (default ``boost_all``: all three sources for every user) the category of each history event is
recovered from its hashed id (the clean tables' distinct ids hashed by ``dynamix_spark.ebf.hashed_id``, the
documented encoding; organic and page ids are ``CATALOG_STRIDE`` x category + item, docs/PLANTED_MECHANISM.md) and
counted where it equals the target ad's category; the ad history also gives its length and how often the target ad
itself is in it. A counting model P(label | key) (each count capped at 4, the ad length at 16; Laplace-smoothed
towards the training day's base rate) is fitted on ``--train-ds`` and scored on ``--eval-ds`` by NE (eq. 10), per
segment, for keys made of the ad history alone, then with the organic and the page matches. The NE such a
table reaches is a floor on what a model with those sources could reach (it knows only these counts), and the
differences between the rows are what the extra sources carry about the planted interest category.

``--predictions NAME=PRED.npz`` (a run's evaluation predictions, ``bench/score_run.py``; repeatable): a logistic
regression on the run's logit alone and on the logit plus the organic / page match counts, fitted on half of the
evaluation users and scored (NE) on the other half. What the counts add to a run's own predictions is planted
signal its model did not use.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.metrics import normalized_entropy  # noqa: E402  (numpy only: runs in the Spark environment too)

COLUMNS = ["user_id", "event_ts_us", "label", "segment", "tgt_category_id", "tgt_ad_id", "ad_seq_category_id", "ad_seq_ad_id", "ad_len",
           "organic_seq_content_id", "organic_len", "page_seq_page_id", "page_len"]
KEYS = {
    "ad history: length, same ad": ["ad_len", "same_ad"],
    "ad history: + same category": ["ad_len", "same_ad", "ad_cat"],
    "ad + organic same category": ["ad_len", "same_ad", "ad_cat", "organic_cat"],
    "ad + page same category": ["ad_len", "same_ad", "ad_cat", "page_cat"],
    "ad + organic + page": ["ad_len", "same_ad", "ad_cat", "organic_cat", "page_cat"],
}


def _id_maps(spark, lake: str) -> dict[str, dict[int, int]]:
    """hashed id -> category, per attribute, from the clean tables' distinct values."""
    from pyspark.sql import functions as F

    from dynamix_spark.ebf import hashed_id
    from dynamix_spark.generate import CATALOG_STRIDE

    def one(table: str, col: str, to_cat) -> dict[int, int]:
        df = spark.read.format("delta").load(f"{lake}/{table}").select(col).distinct()
        return {r["h"]: int(r["c"]) for r in
                df.select(hashed_id(col, F.col(col)).alias("h"), to_cat(F.col(col)).alias("c")).collect()}

    return {"category": one("clean_ad_impressions", "category_id", lambda c: c),
            "content": one("clean_organic_impressions", "content_id", lambda c: F.floor(c / CATALOG_STRIDE)),
            "page": one("clean_page_impressions", "page_id", lambda c: F.floor(c / CATALOG_STRIDE))}


def _features(spark, lake: str, ds: str, policy: str, maps: dict[str, dict[int, int]]) -> dict[str, np.ndarray]:
    from pyspark.sql import functions as F

    pdf = (spark.read.format("delta").load(f"{lake}/ebf_examples")
           .where((F.col("ds") == ds) & (F.col("policy") == policy)).select(*COLUMNS).toPandas())

    def matrix(col: str) -> np.ndarray:
        return np.stack([np.asarray(x if x is not None else [], dtype=np.int64) for x in pdf[col]])

    def lookup(m: np.ndarray, table: dict[int, int]) -> np.ndarray:
        return np.vectorize(lambda h: table.get(int(h), -1), otypes=[np.int64])(m)

    target_cat = np.array([maps["category"].get(int(h), -2) for h in pdf["tgt_category_id"]])

    def same_category(seq_col: str, len_col: str, table: dict[int, int]) -> np.ndarray:
        lengths = pdf[len_col].to_numpy()
        if lengths.max(initial=0) == 0:
            return np.zeros(len(pdf), dtype=np.int64)
        cats = lookup(matrix(seq_col), table)
        valid = np.arange(cats.shape[1])[None, :] < lengths[:, None]
        return ((cats == target_cat[:, None]) & valid).sum(1)

    ad_len = pdf["ad_len"].to_numpy()
    ads = matrix("ad_seq_ad_id")
    same_ad = ((ads == pdf["tgt_ad_id"].to_numpy()[:, None])
               & (np.arange(ads.shape[1])[None, :] < ad_len[:, None])).sum(1)
    return {"user_id": pdf["user_id"].to_numpy(), "event_ts_us": pdf["event_ts_us"].to_numpy(),
            "label": pdf["label"].to_numpy().astype(np.float64), "active": (pdf["segment"].to_numpy() > 0),
            "ad_len": np.minimum(ad_len, 16), "same_ad": np.minimum(same_ad, 4),
            "ad_cat": np.minimum(same_category("ad_seq_category_id", "ad_len", maps["category"]), 4),
            "organic_cat": np.minimum(same_category("organic_seq_content_id", "organic_len", maps["content"]), 4),
            "page_cat": np.minimum(same_category("page_seq_page_id", "page_len", maps["page"]), 4)}


def _key(d: dict[str, np.ndarray], feats: list[str]) -> np.ndarray:
    k = d["active"].astype(np.int64)
    for f in feats:
        k = k * 17 + d[f]
    return k


def ceiling(train: dict[str, np.ndarray], ev: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{segment: {key name: NE on the evaluation rows of that segment}} of the counting models."""
    prior = float(train["label"].mean())
    out: dict[str, dict[str, float]] = {}
    for seg, rows in (("all", np.ones(len(ev["label"]), bool)), ("passive", ~ev["active"]), ("active", ev["active"])):
        y = ev["label"][rows]
        out[seg] = {"examples": int(rows.sum()), "base_rate": float(y.mean())}
        for name, feats in {"segment only": [], **KEYS}.items():
            keys, inverse = np.unique(_key(train, feats), return_inverse=True)
            p_key = (np.bincount(inverse, weights=train["label"]) + 2 * prior) / (np.bincount(inverse) + 2)
            k = _key(ev, feats)[rows]
            i = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
            out[seg][name] = normalized_entropy(y, np.where(keys[i] == k, p_key[i], prior))
    return out


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 30) -> np.ndarray:
    """Weights of a logistic regression (Newton steps, a small ridge), x with its intercept column."""
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ w)))
        g = x.T @ (p - y) + l2 * w
        h = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def stacked(ev: dict[str, np.ndarray], predictions: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per run's predictions: NE on half of the evaluation users (the other half fits) of a logistic regression
    on the run's logit alone (a recalibration), and on the logit plus the organic / page match counts (one-hot,
    per segment). What the second adds is the planted signal the run's model left unused."""
    import pandas as pd

    feats = pd.DataFrame({k: ev[k] for k in ("user_id", "event_ts_us", "organic_cat", "page_cat")})
    feats = feats.drop_duplicates(["user_id", "event_ts_us"], keep=False)
    out = {}
    for name, path in predictions.items():
        pr = dict(np.load(path))
        df = pd.DataFrame({k: pr[k] for k in ("user_id", "event_ts_us", "label", "segment", "p")})
        df = df.drop_duplicates(["user_id", "event_ts_us"], keep=False).merge(feats, on=["user_id", "event_ts_us"])
        y = df["label"].to_numpy(dtype=np.float64)
        logit = np.log(df["p"].clip(1e-6, 1 - 1e-6) / (1 - df["p"].clip(1e-6, 1 - 1e-6))).to_numpy()
        active = (df["segment"].to_numpy() > 0).astype(np.float64)
        fit = (df["user_id"].to_numpy() * 2654435761 % 1000) < 500

        def one_hot(col: str) -> np.ndarray:
            v = df[col].to_numpy()
            return np.stack([(v == k) * s for k in range(1, 5) for s in (active, 1 - active)], axis=1)

        designs = {"logit (recalibrated)": [logit, active],
                   "logit + organic matches": [logit, active, *one_hot("organic_cat").T],
                   "logit + organic + page matches": [logit, active, *one_hot("organic_cat").T,
                                                      *one_hot("page_cat").T]}
        yt = y[~fit]
        res = {"rows": int(len(df)), "scored_rows": int((~fit).sum()),
               "model_ne": normalized_entropy(yt, df["p"].to_numpy()[~fit])}
        for label, cols in designs.items():
            x = np.column_stack([np.ones(len(df)), *cols])
            w = _logistic(x[fit], y[fit])
            res[label] = normalized_entropy(yt, 1 / (1 + np.exp(-(x[~fit] @ w))))
        out[name] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--train-ds", required=True)
    ap.add_argument("--eval-ds", required=True)
    ap.add_argument("--policy", default="boost_all")
    ap.add_argument("--config", default=str(ROOT / "conf/local.yaml"))
    ap.add_argument("--predictions", action="append", default=[], metavar="NAME=PRED.npz",
                    help="a run's evaluation predictions (bench/score_run.py), stacked with the counted matches")
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    from dynamix_spark.config import load_config
    from dynamix_spark.session import build_spark

    spark = build_spark("planted-ceiling", load_config(args.config).spark.conf)
    maps = _id_maps(spark, args.lake)
    train = _features(spark, args.lake, args.train_ds, args.policy, maps)
    ev = _features(spark, args.lake, args.eval_ds, args.policy, maps)
    result = ceiling(train, ev)
    names = ["segment only", *KEYS]
    print("| segment | examples | base rate | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for seg, r in result.items():
        print(f"| {seg} | {r['examples']:,} | {r['base_rate']:.4f} | " + " | ".join(f"{r[n]:.4f}" for n in names) + " |")
    shares = {}
    for seg, active in (("passive", False), ("active", True)):
        rows = ev["active"] == active
        shares[seg] = {f: {"share_with_match": float((ev[f][rows] > 0).mean()),
                           "rate_with": float(ev["label"][rows][ev[f][rows] > 0].mean()),
                           "rate_without": float(ev["label"][rows][ev[f][rows] == 0].mean())}
                       for f in ("ad_cat", "organic_cat", "page_cat")}
    print(json.dumps(shares, indent=1))
    stacks = stacked(ev, dict(p.split("=", 1) for p in args.predictions)) if args.predictions else {}
    for name, r in stacks.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in r.items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"lake": args.lake, "train_ds": args.train_ds, "eval_ds": args.eval_ds,
                                              "policy": args.policy, "ne": result, "matches": shares,
                                              "stacked": stacks}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
