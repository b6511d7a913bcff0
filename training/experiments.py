"""The DynamiX experiments (Tables 2 and 3, Figures 3 and 5) and a DynInt ablation, by one command.

    bash scripts/experiments.sh [--seeds 3] [--raw-root PATH] [--out docs] [KEY=VALUE ...]
    .venv-train/bin/python -m training.experiments --config conf/local.yaml [same flags]

It runs in the training environment (.venv-train: torch, Petastorm, no PySpark); the data preparation calls
the Spark side's job commands in its own environment (.venv) as subprocesses, and the lake statistics of the
report are read JVM-free (``training/delta_snapshot`` and pyarrow).

1. Data. Default: the lake at ``paths.lake_root``; if its ``ebf_examples`` is missing, the default dataset is
   generated (``generator.*``, unless raw data is already there) and the nightly pipeline runs over its days.
   ``--raw-root PATH``: raw data in the contract (``<PATH>/<source>/ds=YYYY-MM-DD/`` with the landing marker);
   the nightly pipeline runs over every day found there into a separate lake, ``<runs-dir>/lake``.
2. Runs (one process, sequentially, ``ebf_examples`` pinned at one Delta version): every arm of Tables 2
   and 3 (policies baseline, remove_passive, remove_active, boost_all, boost_active) with ``--seeds`` seeds,
   then the ablation on the baseline policy with seed 1: the four model variants, PIN depth 1..4 and the
   orthogonal regularization rate. Runs with an identical configuration share one run (the default
   DWP / depth / rate of the ablation is the baseline arm's seed 1). A run folder whose ``report.json`` has
   the same configuration and Delta version is reused unless ``--fresh``.
3. Report: ``<out>/EXPERIMENTS.md``, ``<out>/experiments.json`` (every number of the report, and each run's
   folder) and ``<out>/experiments_*.png``.

Conventions (also written into the report): NE is eq. 10 on the evaluation day(s), lower is better;
NE gain = NE(baseline) - NE(arm), positive = better, absolute and relative (% of the baseline's NE); QPS
change = (arm / baseline - 1) x 100 %. All comparisons are paired by seed (same seed, same data order as far
as the policies' rows allow); mean and sample std over seeds. "Within noise": |mean| < 2 x standard error
of the paired differences (std / sqrt(n)); with one seed there is no spread and nothing is called
significant.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dynamix_spark.config import Config, ConfigError, config_to_dict, load_config  # noqa: E402
from training.delta_snapshot import latest_version, live_files  # noqa: E402
from training.spark_side import SparkJobError, run_job  # noqa: E402

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
# The default run size: sized so the whole command finishes in about half an hour on a shared 2-core CPU
# host (the report states the measured time). Any train.* key can be overridden on the command line.
DEFAULT_TRAIN = {"train.max_steps": 60, "train.eval_every": 20, "train.eval_max_batches": 15,
                 "train.final_eval_max_batches": 60, "train.lr": 0.01,
                 "train.early_stopping_patience": 1000, "train.checkpoint_every": 100000}
NOISE_SE = 2.0


@dataclass(frozen=True)
class Run:
    name: str  # folder name under the runs dir
    overrides: tuple[str, ...]  # KEY=VALUE on top of the experiment's base overrides


def plan_runs(seeds: Sequence[int], ablation: bool = True) -> tuple[dict, dict]:
    """(arm runs {arm: [(seed, Run)]}, ablation rows {group: [(value, Run)]}); run names may repeat."""
    arms = {a: [(s, Run(f"{a}-s{s}", (f"train.policy={a}", f"train.seed={s}"))) for s in seeds] for a in ARMS}
    s0 = seeds[0]
    base = ("train.policy=baseline", f"train.seed={s0}")
    abl: dict[str, list] = {}
    if ablation:
        abl["variant"] = [(v, Run(f"abl-variant-{v}", (*base, f"model.variant={v}"))) for v in VARIANTS]
        abl["depth"] = [(n, Run(f"abl-depth-{n}", (*base, "model.variant=dwp", f"model.num_layers={n}")))
                        for n in DEPTHS]
        abl["orth_rate"] = [(r, Run(f"abl-orth-{r:g}", (*base, "model.variant=dwp", f"model.orth_rate={r!r}")))
                            for r in ORTH_RATES]
    return arms, abl


# ----------------------------------------------------------------------------------------------- data


def _has_table(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def raw_days(raw_root: str) -> list[str]:
    folder = Path(raw_root) / "ad_impressions"
    return sorted(p.name.split("=", 1)[1] for p in folder.glob("ds=*") if p.is_dir())


def prepare_lake(cfg: Config, generate: bool, log) -> dict:
    """Generate (if asked and missing) and run the nightly pipeline when ``ebf_examples`` is missing.

    Both are the Spark side's documented commands (``jobs/generate_logs.py``, ``jobs/nightly.py --ds FIRST
    --until LAST``), run in the Spark environment as subprocesses (``training/spark_side.py``): this
    environment has no PySpark."""
    lake = Path(cfg.paths.lake_root)
    info: dict[str, Any] = {"raw_root": cfg.paths.raw_root, "lake_root": cfg.paths.lake_root,
                            "generated": False, "pipeline_days": []}
    if _has_table(lake / "ebf_examples"):
        return info
    if generate and not raw_days(cfg.paths.raw_root):
        log(f"generating the default dataset into {cfg.paths.raw_root}")
        run_job("generate_logs", cfg, log=log)
        info["generated"] = True
    days = raw_days(cfg.paths.raw_root)
    if not days:
        raise SystemExit(f"no raw partitions under {cfg.paths.raw_root}/ad_impressions")
    log(f"nightly pipeline {days[0]} .. {days[-1]} into {lake}")
    t0 = time.perf_counter()
    try:
        run_job("nightly", cfg, ["--ds", days[0], "--until", days[-1]], log=log)
    except SparkJobError as e:
        raise SystemExit(f"the nightly pipeline failed: {e}")
    info["pipeline_days"], info["pipeline_seconds"] = days, time.perf_counter() - t0
    return info


def _read_table(table: str, columns: Sequence[str]):
    """A Delta table's latest snapshot as a pandas frame (JVM-free: the log replay and pyarrow)."""
    import pandas as pd
    import pyarrow.parquet as pq

    import pyarrow as pa

    parts = []
    for f in live_files(table):
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


# ----------------------------------------------------------------------------------------------- runs


def _canon(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def execute(cfg_path: str, base: Sequence[str], runs: Sequence[Run], runs_dir: Path, table: str, version: int,
            fresh: bool, log) -> dict[str, dict]:
    """Train every distinct run (in this process); {run name: report.json content}."""
    import torch

    from training.train import setup_distributed, train

    d = setup_distributed()
    reports: dict[str, dict] = {}
    todo = list(dict.fromkeys(runs))
    for i, r in enumerate(todo, 1):
        cfg = load_config(cfg_path, [*base, *r.overrides])
        out = runs_dir / r.name
        rep_path = out / "report.json"
        want = json.loads(_canon(config_to_dict(cfg)))
        if not fresh and rep_path.exists():
            old = json.loads(rep_path.read_text())
            if old.get("config") == want and old.get("delta_version") == version and old.get("table") == table:
                log(f"[{i}/{len(todo)}] {r.name}: reusing {rep_path}")
                reports[r.name] = old
                continue
        if out.exists():
            shutil.rmtree(out)
        log(f"[{i}/{len(todo)}] {r.name}: training ({' '.join(r.overrides)})")
        t0 = time.perf_counter()
        torch.manual_seed(cfg.train.seed)
        train(cfg, table, out, d, version)
        (out / "checkpoint.pt").unlink(missing_ok=True)  # ~100 MB each; the experiments need only the report
        (out / "wall_seconds.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
        reports[r.name] = json.loads(rep_path.read_text())
        log(f"    {r.name}: eval NE {reports[r.name]['eval']['ne']:.5f} in {time.perf_counter() - t0:.0f} s")
    return reports


def _wall(run_dir: Path) -> float:
    f = run_dir / "wall_seconds.json"
    return json.loads(f.read_text())["wall_s"] if f.exists() else 0.0


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
                                       "train_samples_per_s", "inference_samples_per_s")
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


# ----------------------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_dwell(d: dict, path: Path, s: int) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    both = np.concatenate([d["pos"], d["neg"]])
    bins = np.linspace(both.min(), both.max(), 60) if both.size else 60
    ax.hist(d["neg"], bins=bins, density=True, alpha=0.55, color="tab:blue",
            label=f"no conversion in [t-60 s, t+{s} s] (n={len(d['neg']):,})")
    ax.hist(d["pos"], bins=bins, density=True, alpha=0.55, color="tab:green",
            label=f"conversion in [t-60 s, t+{s} s] (n={len(d['pos']):,})")
    ax.set_xlabel("ln(dwell ms) of clean ad impressions")
    ax.set_ylabel("density")
    ax.set_title("Log dwell near vs. away from conversions (DynamiX Fig. 3)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def plot_corr(abs_corr: np.ndarray, per_ds: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.hist(abs_corr, bins=60, color="tab:gray", alpha=0.8)
    for i, (ds, f) in enumerate(sorted(per_ds.items())):
        if f["epsilon"] is not None:
            ax.axvline(f["epsilon"], color=f"C{i}", ls="--", label=f"epsilon {ds} = {f['epsilon']:.4f}")
    ax.set_xlabel("|Corr| per user window (eq. 8)")
    ax.set_ylabel("windows")
    ax.set_title("|Corr| distribution; active = |Corr| > epsilon (eq. 9)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def plot_curves(arms: dict, reports: dict, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, group, title in ((axes[0], TABLE2, "(a) dynamic removal"), (axes[1], TABLE3, "(b) dynamic boosting")):
        for i, arm in enumerate(group):
            curves = [reports[r.name]["curve"] for _, r in arms[arm]]
            steps = [c["step"] for c in curves[0]]
            ne = np.array([[c["eval_ne"] for c in cv[:len(steps)]] for cv in curves], dtype=float)
            m = ne.mean(axis=0)
            ax.plot(steps, m, marker="o", color=f"C{i}", label=arm)
            if len(curves) > 1:
                ax.fill_between(steps, ne.min(axis=0), ne.max(axis=0), color=f"C{i}", alpha=0.15)
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("eval NE (eq. 10; lower is better)")
    fig.suptitle("NE over training per arm: mean over seeds, band = min..max (DynamiX Fig. 5)", fontsize=10)
    _save(plt, fig, path)


def plot_ablation(abl: dict, path: Path) -> None:
    plt = _plt()
    groups = [g for g in ("variant", "depth", "orth_rate") if g in abl]
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.5))
    axes = np.atleast_1d(axes)
    for ax, g in zip(axes, groups):
        rows = abl[g]
        labels = [str(r["value"]) for r in rows]
        ax.plot(range(len(rows)), [r["ne"] for r in rows], marker="o")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_title({"variant": "model variant", "depth": "PIN depth (DWP)", "orth_rate": "orth. rate (DWP)"}[g])
    axes[0].set_ylabel("eval NE")
    _save(plt, fig, path)


# ----------------------------------------------------------------------------------------------- report

F_NE, F_PCT, F_QPS = "{:.5f}", "{:+.2f}", "{:,.0f}"


def fmt(x: float | None, f: str = F_NE) -> str:
    return "n/a" if x is None else f.format(x)


def pm(s: dict, f: str = F_NE) -> str:
    """mean ± std (std only with >= 2 runs)."""
    return fmt(s["mean"], f) + ("" if s["std"] is None else " ± " + fmt(s["std"], f.replace("+", "")))


def noise(s: dict) -> str:
    if s["within_noise"] is None:
        return "n/a (1 run)"
    return "within noise" if s["within_noise"] else ("better" if s["mean"] > 0 else "worse") + ", beyond noise"


def qnoise(s: dict) -> str:
    if s["within_noise"] is None:
        return "n/a (1 run)"
    return "within noise" if s["within_noise"] else ("faster" if s["mean"] > 0 else "slower") + ", beyond noise"


def write_markdown(res: dict, path: Path) -> None:
    m = res["meta"]
    L: list[str] = [
        "# Experiments: DynamiX Tables 2 and 3, and a DynInt ablation", "",
        f"Generated by `{m['command']}` (finished {m['finished_at']}; {m['train_runs']} training runs taking "
        f"{m['train_wall_s_sum']:.0f} s when trained; this invocation {m['runtime_s']:.0f} s, reused runs "
        "included). Every number below is in `experiments.json`, read from the runs' "
        "`report.json` files.", "",
        "## Set-up", "",
        f"- data: lake `{m['lake_root']}` (raw `{m['raw_root']}`), `ebf_examples` at Delta version "
        f"{m['delta_version']}; train days {', '.join(m['train_days'])}, evaluation day(s) "
        f"{', '.join(m['eval_days'])}: the tables score the first {m['eval_rows']:,} of its "
        f"{m['eval_rows_total']:,} examples (`train.final_eval_max_batches` = {m['final_eval_max_batches']}, "
        "0 = all; batches of both segments interleaved by the seeded schedule: the same number of rows per "
        "segment in every arm of a seed, but not exactly the same rows, since each policy's files order them "
        f"differently; the evaluation base rate differs between the arms of a seed by up to "
        f"{m['eval_base_rate_spread_pct']:.2f}% of its value).",
        f"- model {m['variant']} (embed {m['embed_dim']}, {m['num_layers']} PIN layers, orth. rate "
        f"{m['orth_rate']:g}), batch {m['batch_size']}, {m['max_steps']} steps per run "
        f"({m['max_steps'] * m['batch_size']:,} training examples), one process on {m['device']}; seeds "
        f"{', '.join(map(str, m['seeds']))}, learning rate {m['lr']:g}. The NE curves score the first "
        f"{m['eval_max_batches']} evaluation batches every {m['eval_every']} steps (0 = all).",
        "- NE is eq. 10 (mean log loss / entropy of the evaluation base rate), lower is better. "
        "**NE gain = NE(baseline) - NE(arm): positive = better**, given absolute and relative (% of the "
        "baseline's NE). QPS change = (arm / baseline - 1) x 100 %, for training samples/s and inference "
        "samples/s (evaluation scoring, loader included). Differences are paired by seed; mean ± sample std over "
        f"seeds. **Within noise** when |mean difference| < {NOISE_SE:g} x its standard error (std / sqrt(n)).",
        "- Throughput is measured on a shared CPU host while other jobs run: QPS differences of a few % are "
        "not meaningful unless flagged beyond noise (the paper likewise calls QPS < 1% and NE gains in "
        "[0, 0.02] noise).", "",
        "## Segments (eq. 9)", "",
        "| ds | epsilon | mode | windows | with a corr | active share (all windows) | active share (with a corr) |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, f in res["segments"]["per_ds"].items():
        L.append(f"| {ds} | {fmt(f['epsilon'], '{:.5f}')} | {f['epsilon_mode']} | {f['windows']:,} | "
                 f"{f['windows_with_corr']:,} | {fmt(f['active_share'], '{:.4f}')} | "
                 f"{fmt(f['active_share_of_corr'], '{:.4f}')} |")
    share = res["arms"]["baseline"]["metrics"]["eval_active_share"]
    L += ["", f"Evaluation examples in the active segment: {fmt(share['mean'], '{:.4f}')} of all "
          "(the same count per segment in every arm of a seed). Figures: `experiments_corr.png` (|Corr| with epsilon marked), "
          "`experiments_dwell.png` (Figure 3: ln dwell of impressions with vs. without a conversion in "
          f"[t-60 s, t+{m['forecast_horizon_s']} s]).", ""]
    dw = res["dwell"]
    L += ["| impressions | n | mean ln(dwell ms) | std |", "|---|---|---|---|",
          f"| conversion in [t-60 s, t+{m['forecast_horizon_s']} s] | {dw['pos_n']:,} | {dw['pos_mean']:.4f} | "
          f"{dw['pos_std']:.4f} |",
          f"| no conversion | {dw['neg_n']:,} | {dw['neg_mean']:.4f} | {dw['neg_std']:.4f} |", ""]
    for title, group in (("Table 2: attribute removal (ad-impression EBF)", TABLE2),
                         ("Table 3: attribute addition (3 EBF sources)", TABLE3)):
        L += [f"## {title}", "",
              "| arm | NE | NE gain | NE gain % | gain: noise? | training QPS % | inference QPS % | QPS noise? "
              "(train / inference) |", "|---|---|---|---|---|---|---|---|"]
        for arm in group:
            a = res["arms"][arm]
            if arm == "baseline":
                L.append(f"| {ARM_TEXT[arm]} | {pm(a['metrics']['ne'])} | 0 | 0 | - | "
                         f"{pm(a['metrics']['train_samples_per_s'], F_QPS)} samples/s | "
                         f"{pm(a['metrics']['inference_samples_per_s'], F_QPS)} samples/s | - |")
                continue
            v = a["vs_baseline"]
            L.append(f"| {ARM_TEXT[arm]} | {pm(a['metrics']['ne'])} | {pm(v['ne_gain'])} | "
                     f"{pm(v['ne_gain_rel_pct'], '{:+.3f}')} | {noise(v['ne_gain'])} | "
                     f"{pm(v['train_qps_pct'], F_PCT)} | {pm(v['inference_qps_pct'], F_PCT)} | "
                     f"{qnoise(v['train_qps_pct'])} / {qnoise(v['inference_qps_pct'])} |")
        L += ["", "Per segment (NE gain paired by seed; passive = segment 0, active = segment >= 1):", "",
              "| arm | NE passive | NE active | gain passive | gain active |", "|---|---|---|---|---|"]
        for arm in group:
            a = res["arms"][arm]
            v = a.get("vs_baseline", {})
            gp = pm(v["ne_gain_passive"]) if "ne_gain_passive" in v else "-"
            ga = pm(v["ne_gain_active"]) if "ne_gain_active" in v else "-"
            L.append(f"| {arm} | {pm(a['metrics']['ne_passive'])} | {pm(a['metrics']['ne_active'])} | {gp} | {ga} |")
        L.append("")
    L += ["Per run (seed: NE, training samples/s, inference samples/s):", "",
          "| arm | " + " | ".join(f"seed {s}" for s in m["seeds"]) + " |",
          "|---|" + "---|" * len(m["seeds"])]
    for arm in ARMS:
        runs = res["arms"][arm]["runs"]
        L.append(f"| {arm} | " + " | ".join(
            f"{fmt(runs[str(s)]['ne'])}, {fmt(runs[str(s)]['train_samples_per_s'], F_QPS)}, "
            f"{fmt(runs[str(s)]['inference_samples_per_s'], F_QPS)}" for s in m["seeds"]) + " |")
    L += ["", "NE curves: `experiments_ne_curves.png` (Figure 5).", ""]
    if res["ablation"]:
        L += ["## DynInt ablation (baseline policy, seed " f"{m['seeds'][0]})", "",
              "| setting | value | run | NE | AUC | log loss | training samples/s | inference samples/s |",
              "|---|---|---|---|---|---|---|---|"]
        for g, rows in res["ablation"].items():
            for r in rows:
                L.append(f"| {g} | {r['value']} | {r['run']} | {fmt(r['ne'])} | {fmt(r['auc'], '{:.4f}')} | "
                         f"{fmt(r['log_loss'])} | {fmt(r['train_samples_per_s'], F_QPS)} | "
                         f"{fmt(r['inference_samples_per_s'], F_QPS)} |")
        L += ["", "Depth and orthogonal rate are varied on DynInt-DWP (the orthogonal penalty exists for DGP and "
              "DWP only). One seed each: differences below the arms' seed spread (above) are not evidence. "
              "Plot: `experiments_ablation.png`.", ""]
    path.write_text("\n".join(L))


# ----------------------------------------------------------------------------------------------- main


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="DynamiX Tables 2 and 3 and a DynInt ablation on ebf_examples")
    p.add_argument("--config", default=str(ROOT / "conf" / "local.yaml"))
    p.add_argument("--raw-root", help="raw data in the contract: run the pipeline on it into <runs-dir>/lake")
    p.add_argument("--seeds", type=int, default=3, help="runs per arm (seeds 1..N)")
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for EXPERIMENTS.md, experiments.json, PNGs")
    p.add_argument("--runs-dir", help="run folders (default: <train.out_dir>/experiments)")
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--fresh", action="store_true", help="re-train runs whose report.json matches")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run, e.g. --set train.max_steps=60 (repeatable; the jobs' "
                        "convention)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="bare overrides, the old form: same as --set")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    if args.overrides:
        print("experiments: bare KEY=VALUE overrides are the old form; use --set KEY=VALUE (as the jobs do)",
              file=sys.stderr)
    base = [f"{k}={v}" for k, v in DEFAULT_TRAIN.items()] + list(args.sets) + list(args.overrides)
    try:
        cfg = load_config(args.config, base)
        runs_dir = Path(args.runs_dir or Path(cfg.train.out_dir) / "experiments")
        if args.raw_root:
            base += [f"paths.raw_root={args.raw_root}", f"paths.lake_root={runs_dir / 'lake'}",
                     "maintenance.register_catalog=false"]
            cfg = load_config(args.config, base)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    log = lambda msg: print(f"[experiments {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_lake(cfg, generate=not args.raw_root, log=log)
    table = str((Path(cfg.paths.lake_root) / "ebf_examples").resolve())
    version = latest_version(table)
    seeds = list(range(1, args.seeds + 1))
    arms, abl = plan_runs(seeds, ablation=not args.no_ablation)
    runs = [r for rs in arms.values() for _, r in rs] + [r for rows in abl.values() for _, r in rows]
    # identical configurations share a run (e.g. the ablation's default DWP is the baseline arm's seed 1)
    by_cfg: dict[str, Run] = {}
    alias: dict[str, Run] = {}
    for r in runs:
        key = _canon(config_to_dict(load_config(args.config, [*base, *r.overrides])))
        alias[r.name] = by_cfg.setdefault(key, r)
    arms = {a: [(s, alias[r.name]) for s, r in rs] for a, rs in arms.items()}
    abl = {g: [(v, alias[r.name]) for v, r in rows] for g, rows in abl.items()}
    distinct = list(dict.fromkeys(alias.values()))
    log(f"{len(distinct)} training runs on {table}@v{version}, runs in {runs_dir}")
    reports = execute(args.config, base, distinct, runs_dir, table, version, args.fresh, log)

    log("segments, Figure 3 and report")
    seg = segment_facts(cfg)
    dwell = dwell_by_label(cfg)
    res: dict[str, Any] = {"arms": compare(arms, reports)}
    res["ablation"] = {g: [{"value": v, "run": r.name, **run_numbers(reports[r.name])} for v, r in rows]
                       for g, rows in abl.items()}
    res["runs"] = {r.name: {"dir": str((runs_dir / r.name).resolve()), **run_numbers(reports[r.name])}
                   for r in distinct}
    res["segments"] = {"per_ds": seg["per_ds"], "abs_corr_n": int(len(seg["abs_corr"])),
                       "abs_corr_mean": float(seg["abs_corr"].mean()) if len(seg["abs_corr"]) else None}
    res["dwell"] = {f"{k}_{stat}": float(getattr(np, stat)(dwell[k])) if stat != "n" else int(len(dwell[k]))
                    for k in ("pos", "neg") for stat in ("n", "mean", "std")}
    plot_dwell(dwell, out / "experiments_dwell.png", cfg.stats.forecast_horizon_s)
    plot_corr(seg["abs_corr"], seg["per_ds"], out / "experiments_corr.png")
    plot_curves(arms, reports, out / "experiments_ne_curves.png")
    if res["ablation"]:
        plot_ablation(res["ablation"], out / "experiments_ablation.png")
    r0 = reports[arms["baseline"][0][1].name]
    rc = r0["config"]
    res["meta"] = {
        "command": "python -m training.experiments " + " ".join(argv if argv is not None else sys.argv[1:]),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "runtime_s": time.perf_counter() - t_start, "train_runs": len(distinct), "data": data,
        "lake_root": cfg.paths.lake_root, "raw_root": cfg.paths.raw_root, "table": table, "delta_version": version,
        "train_days": r0["train_days"], "eval_days": r0["eval_days"], "eval_rows": r0["eval"]["n"],
        "seeds": seeds, "device": r0["device"], "variant": rc["model"]["variant"],
        "embed_dim": rc["model"]["embed_dim"], "num_layers": rc["model"]["num_layers"],
        "orth_rate": rc["model"]["orth_rate"], "batch_size": rc["train"]["batch_size"],
        "max_steps": rc["train"]["max_steps"], "eval_every": rc["train"]["eval_every"],
        "eval_max_batches": rc["train"]["eval_max_batches"], "lr": rc["train"]["lr"],
        "final_eval_max_batches": rc["train"]["final_eval_max_batches"],
        "eval_rows_total": sum(f.num_records or 0 for f in live_files(table, version)
                               if f.partition_values.get("policy") == "baseline"
                               and f.partition_values.get("ds") in r0["eval_days"]),
        "train_wall_s_sum": sum(_wall(runs_dir / r.name) for r in distinct),
        "eval_base_rate_spread_pct": max(
            100 * (max(b) - min(b)) / np.mean(b) for b in
            ([reports[r.name]["eval"]["base_rate"] for a in ARMS for s2, r in arms[a] if s2 == s] for s in seeds)), "forecast_horizon_s": cfg.stats.forecast_horizon_s,
        "noise_rule_se": NOISE_SE, "runs_dir": str(runs_dir.resolve()),
    }
    (out / "experiments.json").write_text(json.dumps(_jsonable(res), indent=1))
    write_markdown(res, out / "EXPERIMENTS.md")
    log(f"wrote {out / 'EXPERIMENTS.md'}, experiments.json and PNGs in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
