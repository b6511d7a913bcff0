"""The experiments' figures (matplotlib, Agg): dwell by label (Figure 3), |Corr| (Figure 5), NE curves per arm,
the ablation."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from training.experiment_stats import TABLE2, TABLE3

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_dwell(d: dict, path: Path, s: int, b: int = 60) -> None:
    """Figure 3 for the configured logging buffer ``b`` and horizon ``s`` (eq. 1's [t - b, t + s])."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    both = np.concatenate([d["pos"], d["neg"]])
    bins = np.linspace(both.min(), both.max(), 60) if both.size else 60
    ax.hist(d["neg"], bins=bins, density=True, alpha=0.55, color="tab:blue",
            label=f"no conversion in [t-{b} s, t+{s} s] (n={len(d['neg']):,})")
    ax.hist(d["pos"], bins=bins, density=True, alpha=0.55, color="tab:green",
            label=f"conversion in [t-{b} s, t+{s} s] (n={len(d['pos']):,})")
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
