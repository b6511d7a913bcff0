"""A training run's report as a person reads it: ``summary.md`` (:func:`summary_text` of ``report.json``) and the
NE curve (:func:`plot_curve`, the paper's Figure 5) with the epoch boundaries and the best step marked; which
version of each day it read (:func:`report_day_versions`)."""
from __future__ import annotations

from pathlib import Path


def report_day_versions(r: dict) -> dict[str, int]:
    """{ds: the Delta version the run read it at} for the run's train and evaluation days (a report from before
    ``day_versions``: every day at its ``delta_version``)."""
    return dict(r.get("day_versions") or {ds: r.get("delta_version")
                                             for ds in (*r.get("train_days", ()), *r.get("eval_days", ()))})


def summary_text(r: dict) -> str:
    ev = r["eval"]
    best_step, last = r.get("best_step", r["steps"]), r.get("last")
    lines = [f"# Training run: {r['variant']} on policy {r['policy']}", "",
             f"- table `{r['table']}` at Delta version {r['delta_version']}; train days {r['train_days']}, "
             f"eval days {r['eval_days']}; world size {r['world_size']} on {r['device']}; {r['steps']} steps",
             f"- best evaluated model (step {best_step}): eval NE {ev['ne']:.5f} (eq. 10; lower is better), "
             f"AUC {ev['auc']:.4f}, log loss {ev['log_loss']:.5f}, {ev['samples']} examples, base rate "
             f"{ev['base_rate']:.4f}"]
    for s, m in ev["per_segment"].items():
        lines.append(f"  - segment {s}: NE {m['ne']:.5f}, AUC {m['auc']:.4f}, {m['n']} examples")
    if last is not None and last["step"] != best_step:
        lines.append(f"- last model (step {last['step']}): eval NE {last['eval']['ne']:.5f}, AUC "
                     f"{last['eval']['auc']:.4f}; `checkpoint.pt` holds it (for --resume), `best.pt` the best")
    lr = r.get("logreg_baseline")
    if lr is not None:
        beats = ev["ne"] < lr["ne"]
        lines.append(f"- baseline, logistic regression on the target features ({lr['train_rows']} training rows): "
                     f"eval NE {lr['ne']:.5f}, AUC {lr['auc']:.4f}. "
                     + (f"DynInt beats it by {lr['ne'] - ev['ne']:.5f} NE." if beats else
                        f"**DynInt does not beat this baseline** (NE {ev['ne']:.5f} vs {lr['ne']:.5f}): the "
                        "sequences and interactions add nothing here yet."))
    bounds = r.get("epoch_boundaries") or []
    if bounds:
        curve = r.get("curve", [])
        after = [c["eval_ne"] for c in curve if c["step"] > bounds[0]]
        note = (f"- {r.get('epochs_configured')} epochs: the rows are trained on again after step(s) {bounds}.")
        if best_step <= bounds[0] and after and min(after) > _curve_ne_at(curve, best_step):
            note += (f" Eval NE was lowest at step {best_step}, in the first epoch, and higher at every evaluation "
                     "after the first epoch boundary: the one-epoch overfitting of CTR models; train.epochs=1 "
                     "is the usual remedy.")
        lines.append(note)
    if r.get("tensorboard_dir"):
        lines.append(f"- TensorBoard: `tensorboard --logdir {r['tensorboard_dir']}` (train loss and NE every "
                     f"{r.get('log_every')} steps, evaluation NE/AUC at every evaluation)")
    fmt = lambda x: "-" if x is None else f"{x:,.0f}"  # noqa: E731
    if r.get("loader_wait_share") is not None:
        lines.append(f"- rank 0 waited for the loader {r['loader_wait_share']:.0%} of its training time "
                     f"({r['loader_wait_s']:.1f} s)")
    lines += [f"- training {fmt(r['train_samples_per_s'])} samples/s; inference {fmt(r['inference_samples_per_s'])} "
              f"samples/s end to end, {fmt(r['inference_model_only_samples_per_s'])} model only; loader alone "
              f"{fmt(r['loader_samples_per_s'])} samples/s"]
    c = r.get("cost_per_example")
    if c:
        lines.append(f"- per example (not moved by the host's load): {fmt(c.get('bytes_read'))} bytes read, "
                     f"{c.get('embedding_lookups', 0):,.0f} embedding lookups, "
                     f"{fmt(c.get('model_flops_forward'))} model FLOPs per forward")
    lines.append("")
    return "\n".join(lines)


def _curve_ne_at(curve: list[dict], step: int) -> float:
    """The curve's eval NE at ``step`` (inf if that step was not evaluated)."""
    return next((c["eval_ne"] for c in curve if c["step"] == step), float("inf"))


def plot_curve(curve: list[dict], path: Path, title: str, boundaries: list[int] = (), best_step: int | None = None
               ) -> None:
    if not curve:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [c["step"] for c in curve]
    ax.plot(steps, [c["eval_ne"] for c in curve], marker="o", label="eval NE")
    ax.plot(steps, [c["train_ne"] for c in curve], marker=".", label="train NE (since last eval)")
    for i, s in enumerate(boundaries):
        ax.axvline(s, color="grey", linestyle="--", linewidth=1, label="epoch boundary" if i == 0 else None)
    if best_step is not None:
        ax.axvline(best_step, color="green", linestyle=":", linewidth=1, label=f"best (step {best_step})")
    ax.set_xlabel("step")
    ax.set_ylabel("normalized entropy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
