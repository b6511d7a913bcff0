"""The DynamiX experiments (Tables 2 and 3, Figures 3 and 5) and a DynInt ablation, by one command.

    bash scripts/experiments.sh [--seeds 3] [--raw-root PATH] [--out docs] [--set KEY=VALUE ...]
    .venv-train/bin/python -m training.experiments --config conf/local.yaml [same flags]

It runs in the training environment (.venv-train: torch, Petastorm, no PySpark); the data preparation calls
the Spark side's job commands in its own environment (.venv) as subprocesses, and the lake statistics of the
report are read JVM-free (``training/delta_snapshot`` and pyarrow).

1. Data. Default: the experiments' own lake (:data:`EXPERIMENT_DATA`: the planted generator at 2,000 users
   under ``data/experiments/``; ``--set paths.lake_root=...`` etc. to point elsewhere); if its ``ebf_examples``
   is missing, the dataset is generated (``generator.*``, unless raw data is already there) and the nightly
   pipeline runs over its days. ``--null-control``: the same with every planted effect 0, under
   ``data/null_control/``.
   ``--raw-root PATH``: raw data in the contract (``<PATH>/<source>/ds=YYYY-MM-DD/`` with the landing marker);
   the nightly pipeline runs over every day found there into a separate lake, ``<runs-dir>/lake``.
2. Runs (one process, sequentially, ``ebf_examples`` pinned: each day at the version of the last run that
   published it, the run ledger's view, read once for every run): every arm of Tables 2
   and 3 (policies baseline, remove_passive, remove_active, boost_all, boost_active) with ``--seeds`` seeds,
   then the ablation on the baseline policy with seed 1: the four model variants, PIN depth 1..4 and the
   orthogonal regularization rate. Runs with an identical configuration share one run (the default
   DWP / depth / rate of the ablation is the baseline arm's seed 1). A run folder whose ``report.json`` has
   the same configuration and the same version of each of its days is reused unless ``--fresh``.
3. Report: ``<out>/EXPERIMENTS.md``, ``<out>/experiments.json`` (every number of the report, and each run's
   folder) and ``<out>/experiments_*.png``.

This module is the runner (data, runs, the command); the statistics are in ``training/experiment_stats.py``,
the figures in ``training/experiment_figures.py`` and the markdown report in ``training/experiment_report.py``.

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
from training.delta_snapshot import DeltaSnapshot, training_snapshot  # noqa: E402
from training.run_report import report_day_versions  # noqa: E402
from training.spark_side import SparkJobError, run_job  # noqa: E402
from training.experiment_figures import plot_ablation, plot_corr, plot_curves, plot_dwell  # noqa: E402
from training.experiment_report import write_markdown  # noqa: E402
from training.segment_truth import segment_truth  # noqa: E402
from training.experiment_stats import (ARM_TEXT, ARMS, DEPTHS, NOISE_SE, ORTH_RATES, TABLE2, TABLE3,  # noqa: E402,F401
                                       VARIANTS, claims, compare, dwell_by_label, run_numbers, segment_facts,
                                       spread)

# The default run size (issue 20): every arm trains one epoch of the training day with the learning rate decayed
# linearly to 0 over it (train.lr_schedule linear), and reports its best evaluated model, scored on the whole
# evaluation day (final_eval_max_batches 0: the same rows in every arm). The peak rate, 0.01: on the null control's
# baseline (seed 1) 0.006 and 0.012 gave whole-day NE 0.6971 and 0.6969, so the end of the epoch is past the
# rate's influence. Why one decayed epoch (measured 2026-12-04, docs/PLANTED_MECHANISM.md): with a constant rate
# over up to 3 epochs every arm's evaluation NE fell steeply until the end of the first epoch and jumped up right
# after it (the one-epoch phenomenon of embedding-heavy CTR models), so every arm reported its step-180 model,
# caught mid-descent. The early-stopping evaluations score a fixed prefix of the evaluation day. Sized so that the
# command finishes within 45 minutes on a shared 2-core
# CPU host (the report states the measured time). Any key can be overridden with --set.
# Each run trains on the last training day (train.train_days 1: the day whose sequences have the whole lookback
# behind them); the logistic-regression sanity baseline of every report is skipped (the arms compare to the
# baseline arm).
DEFAULT_TRAIN = {"train.epochs": 1, "train.max_steps": 0, "train.train_days": 1, "train.eval_every": 60,
                 "train.eval_max_batches": 40, "train.final_eval_max_batches": 0, "train.lr": 0.01,
                 "train.lr_schedule": "linear", "train.early_stopping_patience": 2,
                 "train.checkpoint_every": 100000, "train.logreg_baseline": False}
# The feature-importance pass (--importance) scores this many evaluation batches of each seed's baseline
# run 12 times (as read and once per ad attribute permuted).
IMPORTANCE_BATCHES = 100
# The experiments' own dataset (unless --raw-root), generated and built under data/experiments/ (the demo's lake
# is left alone): 2,000 users, half the demo's, so that the 5 arms x 3 seeds and the variants, each trained for
# an epoch and scored on the whole evaluation day, fit the time on 2 cores; and the planted mechanism sized so
# that one epoch can see it (measured 2026-12-03, docs/PLANTED_MECHANISM.md): one catalog item per category
# (organic and page ids name their category; with 100 items, 5,000 hashed ids per source, the models learnt
# nothing from them in one epoch), 4 conversions a median user-day (a window's Corr statistic needs conversions
# in it) and engagement types that persist (0.95: the previous window's segment says the current window's type);
# and 1,000 ads (20 per category, against the demo's 20,000): each ad id then recurs often enough in one epoch for
# its embedding to learn the category it carries, as campaign ids did, so that the importance ranking can tell
# an attribute the model uses (redundantly with category_id) from the 4 that carry nothing (measured 2026-12-04).
EXPERIMENT_DATA = {"generator.n_users": 2000, "generator.catalog_items_per_category": 1, "generator.n_ads": 1000,
                   "generator.conversions_per_user_day": 4.0, "generator.engagement_persistence": 0.95,
                   "paths.raw_root": "data/experiments/raw",
                   "paths.lake_root": "data/experiments/lake", "paths.truth_root": "data/experiments/truth",
                   "maintenance.register_catalog": False}
# --gpu-scale: the same experiments on a GPU host (one flag): 20x the users of the experiments' dataset, larger
# batches and embeddings, a larger hash space. The lake is generated and built under its own roots.
GPU_SCALE = {"generator.n_users": 40000, "train.batch_size": 4096, "model.embed_dim": 32,
             "model.hash_buckets": 200003, "train.eval_every": 100, "train.eval_max_batches": 50,
             "paths.raw_root": "data/gpu_scale/raw", "paths.lake_root": "data/gpu_scale/lake",
             "paths.truth_root": "data/gpu_scale/truth", "maintenance.register_catalog": False}
# --null-control: the control dataset (generator.null_control: every planted effect 0), generated and built
# under its own roots; its report goes to docs/null_control/ and the main report quotes it.
NULL_CONTROL = {"generator.null_control": True, "paths.raw_root": "data/null_control/raw",
                "paths.lake_root": "data/null_control/lake", "paths.truth_root": "data/null_control/truth",
                "maintenance.register_catalog": False}


@dataclass(frozen=True)
class Run:
    name: str  # folder name under the runs dir
    overrides: tuple[str, ...]  # KEY=VALUE on top of the experiment's base overrides


def plan_runs(seeds: Sequence[int], ablation: str = "variants", model_seeds: Sequence[int] | None = None
              ) -> tuple[dict, dict, dict]:
    """(arm runs {arm: [(seed, Run)]}, model runs {variant: [(seed, Run)]} on the baseline policy, ablation
    rows {group: [(value, Run)]}); run names may repeat (identical configurations are merged by the caller).

    ``ablation``: ``none``; ``variants`` (default): the four DynInt variants on the baseline policy with every
    seed; ``full``: also PIN depth 1..4 and the orthogonal regularization rate on DWP with the first seed.
    ``model_seeds``: the seeds of the variants' runs (default: ``seeds``)."""
    model_seeds = seeds if model_seeds is None else model_seeds
    arms = {a: [(s, Run(f"{a}-s{s}", (f"train.policy={a}", f"train.seed={s}"))) for s in seeds] for a in ARMS}
    models: dict[str, list] = {}
    abl: dict[str, list] = {}
    if ablation in ("variants", "full"):
        models = {v: [(s, Run(f"model-{v}-s{s}", ("train.policy=baseline", f"train.seed={s}", f"model.variant={v}")))
                      for s in model_seeds] for v in VARIANTS}
    if ablation == "full":
        base = ("train.policy=baseline", f"train.seed={seeds[0]}")
        abl["depth"] = [(n, Run(f"abl-depth-{n}", (*base, "model.variant=dwp", f"model.num_layers={n}")))
                        for n in DEPTHS]
        abl["orth_rate"] = [(r, Run(f"abl-orth-{r:g}", (*base, "model.variant=dwp", f"model.orth_rate={r!r}")))
                            for r in ORTH_RATES]
    return arms, models, abl


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


# ----------------------------------------------------------------------------------------------- runs


def _canon(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _same_rows(report: dict, snapshot: DeltaSnapshot) -> bool:
    """Whether a finished run read its days at the versions ``snapshot`` holds them at (a report from before
    ``day_versions``: every day at its ``delta_version``)."""
    had = report_day_versions(report)
    return bool(had) and all(snapshot.day_versions.get(ds) == v for ds, v in had.items())


def execute(cfg_path: str, base: Sequence[str], runs: Sequence[Run], runs_dir: Path, table: str,
            snapshot: DeltaSnapshot, fresh: bool, log) -> dict[str, dict]:
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
            if old.get("config") == want and old.get("table") == table and _same_rows(old, snapshot):
                log(f"[{i}/{len(todo)}] {r.name}: reusing {rep_path}")
                reports[r.name] = old
                continue
        if out.exists():
            shutil.rmtree(out)
        log(f"[{i}/{len(todo)}] {r.name}: training ({' '.join(r.overrides)})")
        t0 = time.perf_counter()
        torch.manual_seed(cfg.train.seed)
        train(cfg, table, out, d, snapshot=snapshot)
        (out / "checkpoint.pt").unlink(missing_ok=True)  # ~100 MB each; the experiments need only the report
        (out / "wall_seconds.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
        reports[r.name] = json.loads(rep_path.read_text())
        log(f"    {r.name}: eval NE {reports[r.name]['eval']['ne']:.5f} in {time.perf_counter() - t0:.0f} s")
    return reports


def _wall(run_dir: Path) -> float:
    f = run_dir / "wall_seconds.json"
    return json.loads(f.read_text())["wall_s"] if f.exists() else 0.0


# ----------------------------------------------------------------------------------------------- main


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _yaml_value(v: Any) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def compare_epsilon(cfg: Config, days: Sequence[str], out_dir: Path, log) -> dict:
    """``jobs/compare_epsilon.py`` for each day (the Spark side's command): the configured epsilon beside
    ``auto``, with the NE gap between segments each gives. {ds: result}; a failure is reported, not fatal."""
    res = {}
    for ds in days:
        path = out_dir / f"epsilon_{ds}.json"
        try:
            run_job("compare_epsilon", cfg, ["--ds", ds, "--out", str(path)], log=log)
            res[ds] = json.loads(path.read_text())["modes"]
        except (SparkJobError, OSError, KeyError, ValueError) as e:
            log(f"epsilon comparison for {ds} failed: {e}")
            res[ds] = {"error": str(e)}
    return res


def importance(runs: Sequence[tuple[int, Run]], runs_dir: Path, low: Sequence[str], log,
               max_batches: int = IMPORTANCE_BATCHES) -> dict:
    """Permutation importance (training/importance.py) of each seed's baseline run on the whole evaluation
    day; the mean NE change per attribute over seeds, the ranking (least important first) and whether the
    configured ``ebf.low_importance_attributes`` are the lowest ones."""
    from training.importance import run_importance

    per_seed = {}
    for s, r in runs:
        log(f"feature importance of {r.name}")
        per_seed[str(s)] = run_importance(runs_dir / r.name, seed=s, max_batches=max_batches)
    attrs = list(next(iter(per_seed.values()))["attributes"])
    mean = {a: float(np.mean([v["attributes"][a]["delta_ne"] for v in per_seed.values()])) for a in attrs}
    segs = sorted({k for v in per_seed.values() for a in attrs for k in v["attributes"][a]["delta_ne_per_segment"]})
    mean_seg = {a: {k: float(np.mean([v["attributes"][a]["delta_ne_per_segment"][k] for v in per_seed.values()
                                      if k in v["attributes"][a]["delta_ne_per_segment"]])) for k in segs}
                for a in attrs}
    ranking = sorted(attrs, key=lambda a: mean[a])
    k = len(low)
    se = {s: {a: v["attributes"][a].get("se_delta_ne") for a in attrs} for s, v in per_seed.items()}
    # within noise of 0 on every seed scored: |delta| < 2 standard errors (training/importance.py); ranking order
    null = [a for a in ranking if all(se[s][a] is not None and abs(v["attributes"][a]["delta_ne"]) < 2 * se[s][a]
                                      for s, v in per_seed.items())]
    return {"max_batches": max_batches, "per_seed": {s: {"ranking": v["ranking"], "base_ne": v["base"]["ne"], "rows": v["base"]["rows"],
                             "delta_ne": {a: v["attributes"][a]["delta_ne"] for a in attrs},
                             "se_delta_ne": se[s]}
                         for s, v in per_seed.items()},
            "within_noise_of_zero": null,
            "mean_delta_ne": mean, "mean_delta_ne_per_segment": mean_seg, "ranking": ranking,
            "configured_low": list(low), "lowest": ranking[:k],
            "configured_are_lowest": sorted(ranking[:k]) == sorted(low),
            "set_command": f"--set ebf.low_importance_attributes=[{', '.join(ranking[:k])}]"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="DynamiX Tables 2 and 3 and a DynInt ablation on ebf_examples")
    p.add_argument("--config", default=str(ROOT / "conf" / "local.yaml"))
    p.add_argument("--raw-root", help="raw data in the contract: run the pipeline on it into <runs-dir>/lake")
    p.add_argument("--seeds", type=int, default=3, help="runs per arm (seeds 1..N)")
    p.add_argument("--out", help="folder for EXPERIMENTS.md, experiments.json, PNGs (default: docs, or "
                   "docs/null_control with --null-control)")
    p.add_argument("--runs-dir", help="run folders (default: <train.out_dir>/experiments[-null_control])")
    p.add_argument("--ablation", choices=("none", "variants", "full"), default="full",
                   help="variants: the 4 DynInt variants on the baseline policy with every seed; full (default): "
                        "also PIN depth and orthogonal rate on DWP with seed 1; none")
    p.add_argument("--no-ablation", action="store_true", help="same as --ablation none")
    p.add_argument("--null-control", action="store_true",
                   help="the control: a dataset generated with every planted effect 0, under its own roots")
    p.add_argument("--gpu-scale", action="store_true",
                   help="scale up for a GPU host: 10x users, batch 4096, embed 32 (GPU_SCALE in this module)")
    p.add_argument("--model-seeds", choices=("first", "all"), default="first",
                   help="seeds of the DynInt variants' runs (the ablation's variant rows): the first (default) or "
                        "all, for paired comparisons of DWP / DGP against xDeepInt")
    p.add_argument("--importance", action="store_true",
                   help="feature importance of each seed's baseline run (training/importance.py)")
    p.add_argument("--compare-epsilon", action="store_true",
                   help="per day, the configured epsilon beside segmentation.epsilon_mode=auto (jobs/compare_epsilon.py)")
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
    ablation = "none" if args.no_ablation or args.null_control else args.ablation
    preset = {**DEFAULT_TRAIN, **EXPERIMENT_DATA, **(GPU_SCALE if args.gpu_scale else {}),
              **(NULL_CONTROL if args.null_control else {})}
    if args.gpu_scale and args.null_control:
        preset.update({k: v.replace("data/null_control", "data/gpu_scale/null_control") for k, v in NULL_CONTROL.items()
                       if k.startswith("paths.")})
    base = [f"{k}={_yaml_value(v)}" for k, v in preset.items()] + list(args.sets) + list(args.overrides)
    try:
        cfg = load_config(args.config, base)
        suffix = "-null_control" if args.null_control else ""
        runs_dir = Path(args.runs_dir or Path(cfg.train.out_dir) / f"experiments{suffix}")
        if args.raw_root:
            base += [f"paths.raw_root={args.raw_root}", f"paths.lake_root={runs_dir / 'lake'}",
                     "maintenance.register_catalog=false"]
            cfg = load_config(args.config, base)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    log = lambda msg: print(f"[experiments {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    out = Path(args.out or (ROOT / "docs" / "null_control" if args.null_control else ROOT / "docs"))
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_lake(cfg, generate=not args.raw_root, log=log)
    table = str((Path(cfg.paths.lake_root) / "ebf_examples").resolve())
    snapshot = training_snapshot(table)  # every run reads the same rows: the run ledger's view, read once
    seeds = list(range(1, args.seeds + 1))
    arms, models, abl = plan_runs(seeds, ablation, model_seeds=seeds if args.model_seeds == "all" else seeds[:1])
    if models:  # the variant rows of the ablation table: seed 1 of each variant, as before
        abl = {"variant": [(v, rs[0][1]) for v, rs in models.items()], **abl}
    # Seed-major: a command cut short leaves whole seeds of every arm, which a re-run with fewer --seeds reports
    # from (finished runs are reused).
    runs = ([rs[i][1] for i in range(len(seeds)) for rs in arms.values()] + [r for rs in models.values() for _, r in rs]
            + [r for rows in abl.values() for _, r in rows])
    # identical configurations share a run (e.g. the ablation's default DWP is the baseline arm's seed 1)
    by_cfg: dict[str, Run] = {}
    alias: dict[str, Run] = {}
    for r in runs:
        key = _canon(config_to_dict(load_config(args.config, [*base, *r.overrides])))
        alias[r.name] = by_cfg.setdefault(key, r)
    arms = {a: [(s, alias[r.name]) for s, r in rs] for a, rs in arms.items()}
    models = {v: [(s, alias[r.name]) for s, r in rs] for v, rs in models.items()}
    abl = {g: [(v, alias[r.name]) for v, r in rows] for g, rows in abl.items()}
    distinct = list(dict.fromkeys(alias.values()))
    log(f"{len(distinct)} training runs on {table}@v{snapshot.version}, runs in {runs_dir}")
    reports = execute(args.config, base, distinct, runs_dir, table, snapshot, args.fresh, log)

    log("segments, Figure 3, importance, epsilon and report")
    seg = segment_facts(cfg)
    dwell = dwell_by_label(cfg)
    res: dict[str, Any] = {"arms": compare(arms, reports)}
    if models:  # DynInt variants against the baseline arm's model (DWP), paired by seed
        res["models"] = compare({"baseline": models["dwp"], **{v: rs for v, rs in models.items() if v != "dwp"}},
                                reports)
    res["ablation"] = {g: [{"value": v, "run": r.name, **run_numbers(reports[r.name])} for v, r in rows]
                       for g, rows in abl.items()}
    res["runs"] = {r.name: {"dir": str((runs_dir / r.name).resolve()), **run_numbers(reports[r.name])}
                   for r in distinct}
    res["segments"] = {"per_ds": seg["per_ds"], "abs_corr_n": int(len(seg["abs_corr"])),
                       "abs_corr_mean": float(seg["abs_corr"].mean()) if len(seg["abs_corr"]) else None}
    res["dwell"] = {f"{k}_{stat}": float(getattr(np, stat)(dwell[k])) if stat != "n" else int(len(dwell[k]))
                    for k in ("pos", "neg") for stat in ("n", "mean", "std")}
    res["segment_truth"] = segment_truth(snapshot.files, reports[arms["baseline"][0][1].name]["eval_days"],
                                         cfg.paths.truth_root)
    if args.importance:
        res["importance"] = importance(arms["baseline"], runs_dir, cfg.ebf.low_importance_attributes, log)
    if args.compare_epsilon:
        res["epsilon"] = compare_epsilon(cfg, sorted(seg["per_ds"]), runs_dir, log)
    res["claims"] = claims(res, null_control=cfg.generator.null_control)
    if not args.null_control:
        null_json = (ROOT / "docs" / "null_control" / "experiments.json") if args.out is None else out / "null_control" / "experiments.json"
        if null_json.exists():
            nres = json.loads(null_json.read_text())
            res["null_control"] = {"path": str(null_json), "finished_at": nres["meta"]["finished_at"],
                                   "claims": nres.get("claims"), "arms": nres["arms"], "meta": nres["meta"]}
    plot_dwell(dwell, out / "experiments_dwell.png", cfg.stats.forecast_horizon_s, cfg.stats.logging_buffer_s)
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
        "null_control": cfg.generator.null_control, "generator": config_to_dict(cfg.generator),
        "lake_root": cfg.paths.lake_root, "raw_root": cfg.paths.raw_root, "table": table,
        "delta_version": snapshot.version, "day_versions": dict(snapshot.day_versions),
        "train_days": r0["train_days"], "eval_days": r0["eval_days"], "eval_rows": r0["eval"]["n"],
        "seeds": seeds, "device": r0["device"], "variant": rc["model"]["variant"],
        "embed_dim": rc["model"]["embed_dim"], "num_layers": rc["model"]["num_layers"],
        "orth_rate": rc["model"]["orth_rate"], "batch_size": rc["train"]["batch_size"],
        "max_steps": rc["train"]["max_steps"], "eval_every": rc["train"]["eval_every"],
        "eval_max_batches": rc["train"]["eval_max_batches"], "lr": rc["train"]["lr"],
        "lr_schedule": rc["train"].get("lr_schedule", "constant"),
        "epochs": rc["train"].get("epochs"), "early_stopping_patience": rc["train"].get("early_stopping_patience"),
        "steps_per_epoch": r0.get("steps_per_epoch"),
        "final_eval_max_batches": rc["train"]["final_eval_max_batches"],
        "eval_rows_total": sum(f.num_records or 0 for f in snapshot.files
                               if f.partition_values.get("policy") == "baseline"
                               and f.partition_values.get("ds") in r0["eval_days"]),
        "train_wall_s_sum": sum(_wall(runs_dir / r.name) for r in distinct),
        "eval_base_rate_spread_pct": max(
            100 * (max(b) - min(b)) / np.mean(b) for b in
            ([reports[r.name]["eval"]["base_rate"] for a in ARMS for s2, r in arms[a] if s2 == s] for s in seeds)),
        "forecast_horizon_s": cfg.stats.forecast_horizon_s,
        "logging_buffer_s": cfg.stats.logging_buffer_s,
        "noise_rule_se": NOISE_SE, "runs_dir": str(runs_dir.resolve()),
    }
    (out / "experiments.json").write_text(json.dumps(_jsonable(res), indent=1))
    write_markdown(res, out / "EXPERIMENTS.md")
    log(f"wrote {out / 'EXPERIMENTS.md'}, experiments.json and PNGs in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
