"""The experiments' arms and their statistics: the lake facts the report reads (JVM-free) and the paired
comparison of runs over seeds (mean, sample std, standard error; "within noise" is |mean| < 2 se)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dynamix_spark.config import Config
from training.delta_snapshot import training_snapshot

TABLE2 = ("baseline", "remove_passive", "remove_active")
TABLE3 = ("baseline", "boost_all", "boost_active")
ARMS = ("baseline", "remove_passive", "remove_active", "boost_all", "boost_active")
ARM_TEXT = {
    "baseline": "baseline: ad-impression EBF, 11 attributes, all users",
    "remove_passive": "attribute removal for passive users, no change for active users",
    "remove_active": "attribute removal for active users, no change for passive users",
    "boost_all": "3 EBF sources for all users",
    "boost_active": "3 EBF sources for active users, organic-impression EBF for passive users",
}
VARIANTS = ("xdeepint", "da", "dgp", "dwp")
DEPTHS = (1, 2, 3, 4)
ORTH_RATES = (0.0, 1e-4, 1e-3, 1e-2)
NOISE_SE = 2.0
COSTS = ("bytes_read", "embedding_lookups", "model_flops_forward")  # per example: training/costs.py


def _read_table(table: str, columns: Sequence[str]):
    """A ``ds``-partitioned Delta table as a pandas frame, each day as its last published run left it (the run
    ledger's view, as training reads; JVM-free: the log replay and pyarrow)."""
    import pandas as pd
    import pyarrow.parquet as pq

    import pyarrow as pa

    parts = []
    for f in training_snapshot(table).files:
        t = pq.read_table(f.path, columns=[c for c in columns if c != "ds"])
        for i, name in enumerate(t.column_names):  # timestamps as int64 microseconds since the epoch (UTC)
            if pa.types.is_timestamp(t.schema.field(i).type):
                col = t.column(i).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
                t = t.set_column(i, name, col)
        df = t.to_pandas()
        if "ds" in columns:
            df["ds"] = f.partition_values.get("ds")
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))


def segment_facts(cfg: Config) -> dict:
    """Per ds of user_window_stats: epsilon(s), mode, windows, share active (of all / of windows with a corr)."""
    uws = _read_table(f"{cfg.paths.lake_root}/user_window_stats", ["corr", "segment", "epsilon", "epsilon_mode", "ds"])
    out = {}
    for ds, g in sorted(uws.groupby("ds")):
        with_corr = g[g["corr"].notna()]
        out[ds] = {"epsilon": float(g["epsilon"].dropna().iloc[0]) if g["epsilon"].notna().any() else None,
                   "epsilon_mode": str(g["epsilon_mode"].iloc[0]), "windows": int(len(g)),
                   "windows_with_corr": int(len(with_corr)),
                   "active_share": float((g["segment"] >= 1).mean()),
                   "active_share_of_corr": float((with_corr["segment"] >= 1).mean()) if len(with_corr) else None}
    return {"per_ds": out, "abs_corr": np.abs(uws["corr"].dropna().to_numpy(dtype=float))}


def dwell_by_label(cfg: Config) -> dict:
    """ln(dwell ms) of clean ad impressions with a conversion of the user in [t - b, t + s] (b the logging
    buffer, s the forecast horizon: the positives of eq. 1) and without (Figure 3)."""
    import pandas as pd

    imp = _read_table(f"{cfg.paths.lake_root}/clean_ad_impressions", ["user_id", "event_ts", "dwell_ms"])
    conv = _read_table(f"{cfg.paths.lake_root}/clean_conversions", ["user_id", "event_ts"])
    b, s = cfg.stats.logging_buffer_s * 1_000_000, cfg.stats.forecast_horizon_s * 1_000_000
    left = pd.DataFrame({"user_id": imp["user_id"].astype("int64"), "t": imp["event_ts"].astype("int64"),
                         "dwell_ms": imp["dwell_ms"].astype("int64")})
    left["lo"] = left["t"] - b
    right = pd.DataFrame({"user_id": conv["user_id"].astype("int64"), "c": conv["event_ts"].astype("int64")})
    right["lo"] = right["c"]
    m = pd.merge_asof(left.sort_values("lo"), right.sort_values("lo"), on="lo", by="user_id",
                      direction="forward")  # the first conversion at or after t - b
    pos = m["c"].notna() & (m["c"] <= m["t"] + s)
    x = np.log(m["dwell_ms"].clip(lower=1).to_numpy(dtype=float))
    return {"pos": x[pos.to_numpy()], "neg": x[~pos.to_numpy()]}


def run_numbers(rep: dict) -> dict:
    ev = rep["eval"]
    seg = ev.get("per_segment", {})
    n = sum(m["n"] for m in seg.values()) or ev["n"]
    return {
        "ne": ev["ne"], "auc": ev["auc"], "log_loss": ev["log_loss"], "eval_rows": ev["n"],
        "ne_passive": seg.get("0", {}).get("ne"), "ne_active": seg.get("1", {}).get("ne"),
        "eval_active_share": sum(m["n"] for s, m in seg.items() if int(s) >= 1) / n if n else None,
        "train_samples_per_s": rep["train_samples_per_s"], "inference_samples_per_s": rep["inference_samples_per_s"],
        "inference_model_only_samples_per_s": rep["inference_model_only_samples_per_s"], "steps": rep["steps"],
        "best_step": rep.get("best_step"),
        # per example, not moved by the host's load (training/costs.py; absent in reports before issue 20)
        **{k: (rep.get("cost_per_example") or {}).get(k) for k in COSTS},
    }


def spread(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=float)
    n = len(v)
    std = float(v.std(ddof=1)) if n >= 2 else None
    out = {"n": n, "mean": float(v.mean()), "std": std, "values": [float(x) for x in v]}
    if n >= 2:
        se = std / math.sqrt(n)
        out["se"] = se
        out["within_noise"] = bool(abs(out["mean"]) < NOISE_SE * se)
    else:
        out["se"], out["within_noise"] = None, None
    return out


def compare(arms: dict, reports: dict) -> dict:
    """Per arm: metrics over seeds, and paired differences against the baseline of the same seed."""
    out = {}
    base = {s: run_numbers(reports[r.name]) for s, r in arms["baseline"]}
    for arm, runs in arms.items():
        nums = {s: run_numbers(reports[r.name]) for s, r in runs}
        seeds = sorted(nums)
        entry = {"runs": {str(s): dict(run=r.name, **nums[s]) for s, r in runs},
                 "metrics": {k: spread([nums[s][k] for s in seeds])
                             for k in ("ne", "auc", "log_loss", "ne_passive", "ne_active", "eval_active_share",
                                       "train_samples_per_s", "inference_samples_per_s", *COSTS)
                             if all(nums[s][k] is not None for s in seeds)}}
        if arm != "baseline":
            b = base
            entry["vs_baseline"] = {
                "ne_gain": spread([b[s]["ne"] - nums[s]["ne"] for s in seeds]),
                "ne_gain_rel_pct": spread([(b[s]["ne"] - nums[s]["ne"]) / b[s]["ne"] * 100 for s in seeds]),
                "train_qps_pct": spread([(nums[s]["train_samples_per_s"] / b[s]["train_samples_per_s"] - 1) * 100
                                         for s in seeds]),
                "inference_qps_pct": spread([(nums[s]["inference_samples_per_s"] / b[s]["inference_samples_per_s"]
                                              - 1) * 100 for s in seeds]),
            }
            for seg in ("passive", "active"):
                if all(nums[s][f"ne_{seg}"] is not None and b[s][f"ne_{seg}"] is not None for s in seeds):
                    entry["vs_baseline"][f"ne_gain_{seg}"] = spread([b[s][f"ne_{seg}"] - nums[s][f"ne_{seg}"]
                                                                     for s in seeds])
        out[arm] = entry
    return out


def _beyond(s: dict | None) -> bool | None:
    """True when a paired spread's mean is beyond NOISE_SE standard errors (None: one run, or absent)."""
    if s is None or s.get("within_noise") is None:
        return None
    return not s["within_noise"]


def _paired(res_arms: dict, a: str, b: str, key: str = "ne") -> dict:
    """NE(b) - NE(a) paired by seed: positive when arm ``a`` is better than ``b``."""
    ra, rb = res_arms[a]["runs"], res_arms[b]["runs"]
    seeds = sorted(set(ra) & set(rb), key=int)
    return spread([rb[s][key] - ra[s][key] for s in seeds])


def claims(res: dict, null_control: bool = False) -> dict:
    """The statements the issue asks the report to show (DynamiX Tables 2 and 3), each decided from the paired
    numbers with the noise rule: {name: {"holds": bool | None, "detail": {...}}}. ``holds`` is None when the
    runs cannot decide it (one seed, or a missing arm). ``null_control``: the only statement is that no arm
    differs from the baseline beyond noise."""
    arms = res["arms"]
    out: dict[str, dict] = {}

    def cost(arm: str, k: str) -> float | None:
        m = arms[arm]["metrics"].get(k)
        return m["mean"] if m else None

    if null_control:
        per = {a: arms[a]["vs_baseline"]["ne_gain"] for a in ARMS if a != "baseline"}
        decided = [_beyond(s) for s in per.values()]
        out["null_no_arm_differs"] = {
            "holds": None if None in decided else not any(decided),
            "detail": {a: {"mean": s["mean"], "se": s["se"], "beyond_noise": _beyond(s)} for a, s in per.items()}}
        return out
    if "boost_active" in arms:
        v = arms["boost_active"]["vs_baseline"]
        g, ga, gp = v["ne_gain"], v.get("ne_gain_active"), v.get("ne_gain_passive")
        b = _beyond(g)
        out["boost_active_gains"] = {"holds": None if b is None else (b and g["mean"] > 0),
                                     "detail": {"gain": g["mean"], "se": g["se"]}}
        if ga and gp:
            out["boost_active_gain_mostly_active"] = {
                "holds": ga["mean"] > gp["mean"] and ga["mean"] > 0,
                "detail": {"gain_active": ga["mean"], "se_active": ga["se"], "gain_passive": gp["mean"],
                           "se_passive": gp["se"]}}
    if "boost_all" in arms and "boost_active" in arms:
        d = _paired(arms, "boost_all", "boost_active")  # > 0: boost_all better than boost_active
        b = _beyond(d)
        extra = {k: (cost("boost_all", k), cost("boost_active", k)) for k in COSTS}
        out["boost_all_no_better"] = {"holds": None if b is None else not (b and d["mean"] > 0),
                                      "detail": {"gain_over_boost_active": d["mean"], "se": d["se"]}}
        out["boost_all_costs_more"] = {
            "holds": all(x is not None and y is not None and x > y for x, y in extra.values()),
            "detail": {k: {"boost_all": x, "boost_active": y} for k, (x, y) in extra.items()}}
    for arm in ("remove_passive", "remove_active"):
        if arm not in arms:
            continue
        g = arms[arm]["vs_baseline"]["ne_gain"]
        b = _beyond(g)
        out[f"{arm}_no_ne_cost"] = {"holds": None if b is None else not (b and g["mean"] < 0),
                                    "detail": {"gain": g["mean"], "se": g["se"]}}
        c = {k: (cost(arm, k), cost("baseline", k)) for k in ("bytes_read", "model_flops_forward")}
        out[f"{arm}_reads_less"] = {
            "holds": all(x is not None and y is not None and x < y for x, y in c.values()),
            "detail": {k: {arm: x, "baseline": y} for k, (x, y) in c.items()}}
    models = res.get("models") or {}
    if "xdeepint" in models:
        for v in ("dwp", "dgp"):
            if v == "dwp":
                s = models["xdeepint"]["vs_baseline"]["ne_gain"]  # NE(dwp) - NE(xdeepint): > 0 xdeepint better
                d = {**s, "mean": -s["mean"], "values": [-x for x in s["values"]]}
            elif v in models:
                d = _paired(models, v, "xdeepint")
            else:
                continue
            b = _beyond(d)
            out[f"{v}_beats_xdeepint"] = {"holds": None if b is None else (b and d["mean"] > 0),
                                          "detail": {"gain_over_xdeepint": d["mean"], "se": d["se"]}}
    im = res.get("importance")
    if im:  # the importance ranking (mean over the seeds scored) puts the configured attributes at the bottom
        others = [a for a in im.get("within_noise_of_zero") or [] if a not in im["configured_low"]]
        out["low_importance_ranks_lowest"] = {
            "holds": bool(im["configured_are_lowest"]),
            "detail": {"lowest": ", ".join(im["lowest"]), "configured": ", ".join(im["configured_low"]),
                       "other attributes within noise of 0": ", ".join(others) or "none"}}
    return out
