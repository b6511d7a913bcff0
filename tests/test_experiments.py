"""The experiments command end to end on a tiny generated dataset with one seed and a few steps: the report
has every arm and ablation row and its figures, and every number in experiments.json / EXPERIMENTS.md is
finite and is the value found in (or computed here from) the runs' own report.json files.

The whole command (generation, the nightly pipeline for 3 days x 5 policies, 14 training runs) takes several
minutes on 2 cores, so those tests are marked slow (``bash scripts/test.sh tests/test_experiments.py -m slow``);
the fast version below runs the same command with the data and training replaced by fixed run reports.

A training-side test (no PySpark in its environment): the command runs the pipeline through the Spark side's
job commands in the Spark environment, and the lake statistics are recomputed here with Spark SQL there
(``tests/seam_spark.py``)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import FEW_DELTA_TASKS_CONF, ROOT, TEST_DATES, TEST_SPARK_CONF, tiny_overrides
from seam_spark import spark_steps
from training import experiments
from training.delta_snapshot import DeltaSnapshot

ARMS = ("baseline", "remove_passive", "remove_active", "boost_all", "boost_active")
TINY_TRAIN = ["model.hash_buckets=101", "model.embed_dim=8", "model.rank=2", "train.batch_size=64",
              "train.max_steps=4", "train.eval_every=2", "train.eval_max_batches=3",
              "train.final_eval_max_batches=0", "train.workers=1", "train.shuffle_buffer=128",
              'ebf.seq_len={"ad": 4, "organic": 4, "page": 4}', "maintenance.register_catalog=false",
              "paths.database=experiments_test", "maintenance.optimize=false", "maintenance.vacuum=false"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    out = root / "docs"
    runs = root / "runs"
    # the pipeline's Spark (a job process in the Spark environment) with the test session's settings
    spark_conf = json.dumps({**TEST_SPARK_CONF, **FEW_DELTA_TASKS_CONF})
    rc = experiments.main(["--config", str(ROOT / "conf" / "local.yaml"), "--seeds", "1", "--out", str(out),
                           "--runs-dir", str(runs), *tiny_overrides(root), *TINY_TRAIN,
                           f"quality.docs_dir={root}/quality_docs", f"spark.conf={spark_conf}"])
    assert rc == 0
    res = json.loads((out / "experiments.json").read_text())
    return out, runs, res


def _numbers(x):
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, (int, float)):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)


def _report(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "report.json").read_text())


@pytest.mark.slow
def test_structure_and_figures(result):
    out, runs, res = result
    assert set(res["arms"]) == set(ARMS)
    assert [r["value"] for r in res["ablation"]["variant"]] == ["xdeepint", "da", "dgp", "dwp"]
    assert [r["value"] for r in res["ablation"]["depth"]] == [1, 2, 3, 4]
    assert [r["value"] for r in res["ablation"]["orth_rate"]] == [0.0, 1e-4, 1e-3, 1e-2]
    for name in ("experiments_dwell.png", "experiments_corr.png", "experiments_ne_curves.png",
                 "experiments_ablation.png"):
        assert (out / name).stat().st_size > 1000, name
    md = (out / "EXPERIMENTS.md").read_text()
    for heading in ("## Segments", "## Table 2", "## Table 3", "## DynInt ablation"):
        assert heading in md
    assert "NE gain = NE(baseline) - NE(arm): positive = better" in md
    assert set(res["segments"]["per_ds"]) == set(TEST_DATES)
    # the ablation's default (DWP, depth 2, rate 1e-4) is the baseline arm's seed-1 run, trained once
    assert res["ablation"]["variant"][3]["run"] == res["arms"]["baseline"]["runs"]["1"]["run"] == "baseline-s1"
    assert res["meta"]["train_runs"] == 5 + 3 + 3 + 3


@pytest.mark.slow
def test_every_number_is_finite(result):
    out, _, res = result
    nums = list(_numbers(res))
    assert nums and all(math.isfinite(v) for v in nums)
    md = (out / "EXPERIMENTS.md").read_text()
    assert not re.findall(r"(?<![A-Za-z])(?:nan|inf|infinity)(?![A-Za-z])", md, flags=re.I)
    assert re.findall(r"\d\.\d{5}", md)  # NE values are there


@pytest.mark.slow
def test_arm_numbers_come_from_the_runs(result):
    out, runs, res = result
    base = _report(runs, "baseline-s1")
    md = (out / "EXPERIMENTS.md").read_text()
    for arm in ARMS:
        r = _report(runs, f"{arm}-s1")
        a = res["arms"][arm]
        assert r["policy"] == arm and r["steps"] == 4
        assert a["runs"]["1"]["ne"] == r["eval"]["ne"]
        assert a["metrics"]["ne"]["mean"] == r["eval"]["ne"] and a["metrics"]["ne"]["std"] is None
        assert a["metrics"]["auc"]["mean"] == r["eval"]["auc"]
        assert a["metrics"]["ne_active"]["mean"] == r["eval"]["per_segment"]["1"]["ne"]
        assert a["metrics"]["train_samples_per_s"]["mean"] == r["train_samples_per_s"]
        assert a["metrics"]["inference_samples_per_s"]["mean"] == r["inference_samples_per_s"]
        # the runs are evaluated on the same rows: the tables compare like with like
        assert r["eval"]["n"] == base["eval"]["n"] and r["eval"]["base_rate"] == base["eval"]["base_rate"]
        row = next(line for line in md.splitlines() if line.startswith(f"| {arm} | ") and "seed" not in line
                   and line.count("|") == 6)  # the per-segment table
        assert f"{r['eval']['per_segment']['0']['ne']:.5f}" in row
        if arm == "baseline":
            continue
        v = a["vs_baseline"]
        gain = base["eval"]["ne"] - r["eval"]["ne"]
        assert v["ne_gain"]["mean"] == pytest.approx(gain, abs=1e-12)
        assert v["ne_gain_rel_pct"]["mean"] == pytest.approx(100 * gain / base["eval"]["ne"], abs=1e-9)
        tq = 100 * (r["train_samples_per_s"] / base["train_samples_per_s"] - 1)
        iq = 100 * (r["inference_samples_per_s"] / base["inference_samples_per_s"] - 1)
        assert v["train_qps_pct"]["mean"] == pytest.approx(tq, abs=1e-9)
        assert v["inference_qps_pct"]["mean"] == pytest.approx(iq, abs=1e-9)
        assert v["ne_gain"]["within_noise"] is None  # one seed: no spread, nothing called significant
        row = next(line for line in md.splitlines() if line.startswith(f"| {experiments.ARM_TEXT[arm]} |"))
        for cell in (f"{r['eval']['ne']:.5f}", f"{gain:.5f}", f"{tq:+.2f}", f"{iq:+.2f}", "n/a (1 run)"):
            assert cell in row, (cell, row)


@pytest.mark.slow
def test_ablation_numbers_come_from_the_runs(result):
    out, runs, res = result
    md = (out / "EXPERIMENTS.md").read_text()
    want = {"variant": ("model", "variant"), "depth": ("model", "num_layers"), "orth_rate": ("model", "orth_rate")}
    for group, rows in res["ablation"].items():
        for row in rows:
            r = _report(runs, row["run"])
            section, key = want[group]
            assert r["config"][section][key] == row["value"] and r["policy"] == "baseline"
            assert row["ne"] == r["eval"]["ne"] and row["auc"] == r["eval"]["auc"]
            assert row["log_loss"] == r["eval"]["log_loss"]
            assert row["train_samples_per_s"] == r["train_samples_per_s"]
            line = next(line for line in md.splitlines() if line.startswith(f"| {group} | {row['value']} | "))
            for cell in (f"{r['eval']['ne']:.5f}", f"{r['eval']['auc']:.4f}", f"{r['eval']['log_loss']:.5f}",
                         f"{r['train_samples_per_s']:,.0f}"):
                assert cell in line, (cell, line)


@pytest.mark.slow
def test_segments_and_dwell_come_from_the_lake(result):
    """Epsilon and active share per ds, and the Figure 3 counts, recomputed here with Spark SQL."""
    _, _, res = result
    lake = res["meta"]["lake_root"]
    cfg_b, cfg_s = 60, 300
    per_ds, _, _, pos, total = spark_steps([
        {"op": "sql", "query": f"SELECT ds, first(epsilon) AS eps, avg(CAST(segment >= 1 AS INT)) AS share, "
                               f"count(*) AS n FROM delta.`{lake}/user_window_stats` GROUP BY ds"},
        {"op": "sql", "query": f"CREATE TEMPORARY VIEW exp_i AS SELECT * FROM delta.`{lake}/clean_ad_impressions`"},
        {"op": "sql", "query": f"CREATE TEMPORARY VIEW exp_c AS SELECT * FROM delta.`{lake}/clean_conversions`"},
        {"op": "sql", "query": f"""SELECT count(*) AS n, avg(ln(i.dwell_ms)) AS m FROM exp_i i WHERE EXISTS (
        SELECT 1 FROM exp_c c WHERE c.user_id = i.user_id
        AND c.event_ts BETWEEN i.event_ts - INTERVAL {cfg_b} SECONDS AND i.event_ts + INTERVAL {cfg_s} SECONDS)"""},
        {"op": "sql", "query": "SELECT count(*) AS n FROM exp_i"},
    ])
    for r in per_ds:
        f = res["segments"]["per_ds"][r["ds"]]
        assert f["epsilon"] == pytest.approx(r["eps"]) and f["windows"] == r["n"]
        assert f["active_share"] == pytest.approx(r["share"])
    pos, total = pos[0], total[0]["n"]
    d = res["dwell"]
    assert d["pos_n"] == pos["n"] and d["pos_n"] + d["neg_n"] == total
    assert d["pos_mean"] == pytest.approx(pos["m"], rel=1e-9)
    assert np.isfinite([d["pos_std"], d["neg_std"]]).all()


# ------------------------------------------------------------------------------------------------------------
# Fast version (no Spark, no training): the same command with the data and training steps replaced by fixed
# run reports, three seeds, so that the spread, the paired differences and the noise rule are checked too.


def _fake_report(name: str, policy: str, seed: int, variant: str, layers: int, orth: float) -> dict:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    ne = 0.8 + 0.05 * rng.random()
    seg = {"0": {"n": 600, "ne": ne + 0.01, "auc": 0.8, "log_loss": 0.1, "base_rate": 0.04},
           "1": {"n": 400, "ne": ne - 0.01, "auc": 0.85, "log_loss": 0.1, "base_rate": 0.04}}
    return {"policy": policy, "variant": variant, "steps": 60, "device": "cpu", "train_days": ["d1", "d2"],
            "eval_days": ["d3"], "train_samples_per_s": 1000 + 100 * rng.random(),
            "inference_samples_per_s": 5000 + 500 * rng.random(), "inference_model_only_samples_per_s": 9000.0,
            "eval": {"n": 1000, "ne": ne, "auc": 0.8 + 0.1 * rng.random(), "log_loss": 0.1 + rng.random() / 100,
                     "base_rate": 0.04, "per_segment": seg},
            "curve": [{"step": s, "eval_ne": ne + 0.1 / s} for s in (20, 40, 60)],
            "config": {"model": {"variant": variant, "num_layers": layers, "orth_rate": orth, "embed_dim": 16},
                       "train": {"seed": seed, "policy": policy, "batch_size": 1024, "max_steps": 60,
                                 "eval_every": 20, "eval_max_batches": 15, "final_eval_max_batches": 60,
                                 "lr": 0.01}}}


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments_fast")
    out, runs = root / "docs", root / "runs"
    mp = pytest.MonkeyPatch()

    def execute(cfg_path, base, todo, runs_dir, table, version, fresh, log):
        reports = {}
        for r in todo:
            cfg = experiments.load_config(cfg_path, [*base, *r.overrides])
            rep = _fake_report(r.name, cfg.train.policy, cfg.train.seed, cfg.model.variant, cfg.model.num_layers,
                               cfg.model.orth_rate)
            (runs_dir / r.name).mkdir(parents=True)
            (runs_dir / r.name / "report.json").write_text(json.dumps(rep))
            reports[r.name] = json.loads((runs_dir / r.name / "report.json").read_text())
        return reports

    mp.setattr(experiments, "prepare_lake", lambda cfg, generate, log: {"generated": False})
    mp.setattr(experiments, "training_snapshot", lambda table: DeltaSnapshot(table, 3, (), ("ds",), {}, {}))
    mp.setattr(experiments, "execute", execute)
    mp.setattr(experiments, "segment_facts", lambda cfg: {
        "per_ds": {"d3": {"epsilon": 0.34, "epsilon_mode": "target_active_fraction", "windows": 10,
                          "windows_with_corr": 6, "active_share": 0.4, "active_share_of_corr": 0.6667}},
        "abs_corr": np.linspace(0, 1, 50)})
    mp.setattr(experiments, "dwell_by_label", lambda cfg: {"pos": np.linspace(7, 9, 30), "neg": np.linspace(6, 9, 70)})
    try:
        assert experiments.main(["--seeds", "3", "--out", str(out), "--runs-dir", str(runs)]) == 0
    finally:
        mp.undo()
    return out, runs, json.loads((out / "experiments.json").read_text())


def test_fast_three_seeds_numbers_come_from_the_runs(fast):
    out, runs, res = fast
    md = (out / "EXPERIMENTS.md").read_text()
    assert all(math.isfinite(v) for v in _numbers(res))
    assert res["meta"]["train_runs"] == 5 * 3 + 9
    for name in ("experiments_dwell.png", "experiments_corr.png", "experiments_ne_curves.png",
                 "experiments_ablation.png"):
        assert (out / name).stat().st_size > 1000
    base = {s: _report(runs, f"baseline-s{s}") for s in (1, 2, 3)}
    for arm in ARMS[1:]:
        rep = {s: _report(runs, f"{arm}-s{s}") for s in (1, 2, 3)}
        gains = np.array([base[s]["eval"]["ne"] - rep[s]["eval"]["ne"] for s in (1, 2, 3)])
        v = res["arms"][arm]["vs_baseline"]["ne_gain"]
        assert v["mean"] == pytest.approx(gains.mean(), abs=1e-12)
        assert v["std"] == pytest.approx(gains.std(ddof=1), abs=1e-12)
        se = gains.std(ddof=1) / math.sqrt(3)
        assert v["within_noise"] == (abs(gains.mean()) < 2 * se)
        ne = np.array([rep[s]["eval"]["ne"] for s in (1, 2, 3)])
        iq = np.array([100 * (rep[s]["inference_samples_per_s"] / base[s]["inference_samples_per_s"] - 1)
                       for s in (1, 2, 3)])
        row = next(line for line in md.splitlines() if line.startswith(f"| {experiments.ARM_TEXT[arm]} |"))
        want = "within noise" if abs(gains.mean()) < 2 * se else ("better" if gains.mean() > 0 else "worse")
        for cell in (f"{ne.mean():.5f} ± {ne.std(ddof=1):.5f}", f"{gains.mean():.5f} ± {gains.std(ddof=1):.5f}",
                     f"{iq.mean():+.2f} ± {iq.std(ddof=1):.2f}", want):
            assert cell in row, (cell, row)
