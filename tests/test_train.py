"""Training end to end from a real Delta table written here: 2-process DDP with gloo (torchrun), NE against
numpy, and resume from a checkpoint giving the same parameters as an uninterrupted run.

A training-side test (no PySpark in its environment): the table is written by delta-spark in the Spark
environment (``tests/seam_spark.py``), from the rows of ``tests/seam_data.py``."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from procs import free_port, kill_group, popen_group
from seam_data import ROWS_PER_PARTITION, TRAIN_DAYS as DAYS, TRAIN_N as N, flipped_eval_rows  # noqa: F401
from seam_data import train_rows as _rows
from seam_spark import spark_steps


def write_ebf_table(rows: list[dict], path: str) -> None:
    """The rows as a Delta table written by delta-spark (in the Spark environment: tests/seam_spark.py)."""
    spark_steps([{"op": "write_ebf", "rows": rows, "path": path, "repartition": 2}])


@pytest.fixture(scope="module")
def ebf_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    path = str(root / "ebf_examples")
    rows = _rows()
    write_ebf_table(rows, path)
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


@pytest.fixture(scope="module")
def ddp_run(ebf_table) -> Path:
    """One node, two processes (torchrun --standalone --nproc_per_node=2), 12 steps."""
    root, _, _ = ebf_table
    out = root / "run_ddp"
    _run(["--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out), "--log-every", "3",
          *_overrides(root, **{"train.max_steps": 12})], nproc=2)
    return out


def test_tensorboard_event_files_hold_train_and_eval_scalars_at_their_steps(ddp_run):
    """Issue 19 (3): rank 0 alone writes event files beside ne_curve.png: train loss/NE every --log-every (3)
    steps, evaluation NE/AUC every train.eval_every (4), the evaluation values equal to the report's curve."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = ddp_run
    files = sorted(out.glob("events.out.tfevents.*"))
    assert len(files) == 1  # rank 0 only
    ea = EventAccumulator(str(out))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/ne", "train/samples_per_s", "eval/ne", "eval/auc", "eval/log_loss"} <= tags
    steps = lambda tag: [e.step for e in ea.Scalars(tag)]  # noqa: E731
    assert steps("train/loss") == steps("train/ne") == steps("train/samples_per_s") == [3, 6, 9, 12]
    assert steps("eval/ne") == steps("eval/auc") == [4, 8, 12]
    rep = json.loads((out / "report.json").read_text())
    assert [c["step"] for c in rep["curve"]] == [4, 8, 12]
    for e, c in zip(ea.Scalars("eval/ne"), rep["curve"]):
        assert e.value == pytest.approx(c["eval_ne"], rel=1e-6)
    for e in ea.Scalars("train/loss") + ea.Scalars("train/ne") + ea.Scalars("train/samples_per_s"):
        assert math.isfinite(e.value) and e.value > 0
    # train NE (rank 0's batches since the last log point) near 1 on a barely trained model, not a loss sum
    assert all(0.3 < e.value < 3 for e in ea.Scalars("train/ne"))
    assert rep["log_every"] == 3 and rep["tensorboard_dir"] == str(out)
    assert "tensorboard --logdir" in (out / "summary.md").read_text()


def test_ddp_two_ranks_same_steps_equal_parameters_and_ne(ebf_table, ddp_run):
    root, path, rows = ebf_table
    out = ddp_run
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


def test_two_nodes_on_one_machine_equal_the_one_node_run(ebf_table, ddp_run):
    """Issue 18: two torchrun launchers (as two hosts would run them), --nnodes=2 --nproc_per_node=1, meeting
    at a c10d rendezvous on 127.0.0.1: the same steps and bit-identical parameters as one node with two
    processes (gloo on CPU)."""
    root, _, _ = ebf_table
    out = root / "run_2nodes"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = lambda node: [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",  # noqa: E731
                        f"--node_rank={node}", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                        "--rdzv_id=dynamix-test", str(ROOT / "training" / "train.py"),
                        "--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out),
                        *_overrides(root, **{"train.max_steps": 12})]
    logs = [root / f"node{n}.log" for n in (0, 1)]
    procs = [subprocess.Popen(cmd(n), env=env, stdout=logs[n].open("w"), stderr=subprocess.STDOUT) for n in (0, 1)]
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    for r in (0, 1):
        one, two = (json.loads((d / f"rank_{r}.json").read_text()) for d in (ddp_run, out))
        assert two["world"] == 2 and two["steps"] == one["steps"] == 12
        assert two["param_sum"] == one["param_sum"] and two["param_abs_sum"] == one["param_abs_sum"]
    a, b = (json.loads((d / "report.json").read_text()) for d in (ddp_run, out))
    assert b["eval"]["ne"] == a["eval"]["ne"] and b["world_size"] == 2


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


def test_lr_schedules_by_hand():
    from types import SimpleNamespace

    from training.train import lr_at

    lin, cos, const = (SimpleNamespace(lr=0.01, lr_schedule=k) for k in ("linear", "cosine", "constant"))
    assert [lr_at(lin, s, 4) for s in range(4)] == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    assert [lr_at(cos, s, 4) for s in range(5)] == pytest.approx(
        [0.01, 0.01 * (1 + 0.5 ** 0.5) / 2, 0.005, 0.01 * (1 - 0.5 ** 0.5) / 2, 0.0])
    assert [lr_at(const, s, 4) for s in range(4)] == [0.01] * 4


def test_linear_schedule_reaches_its_last_rate(ebf_table):
    """12 updates with lr 0.01 decayed linearly over the run's 12 planned steps: the 12th update used 0.01 / 12
    (the rate the saved optimizer holds), and the parameters differ from the constant-rate run's."""
    import torch

    root, _, _ = ebf_table
    conf = ["--config", str(ROOT / "conf" / "local.yaml")]
    lin, const = root / "run_lin", root / "run_const"
    _run([*conf, "--out", str(lin), *_overrides(root, **{"train.lr_schedule": "linear", "train.max_steps": 12})])
    saved = torch.load(lin / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["step"] == 12
    assert [g["lr"] for g in saved["optimizer"]["param_groups"]] == [pytest.approx(0.01 / 12)]
    _run([*conf, "--out", str(const), *_overrides(root, **{"train.max_steps": 12})])
    a = json.loads((lin / "rank_0.json").read_text())
    c = json.loads((const / "rank_0.json").read_text())
    assert c["param_abs_sum"] != pytest.approx(a["param_abs_sum"], rel=1e-6)  # the schedule changed the updates


def test_learns_the_planted_signal(ebf_table):
    root, _, _ = ebf_table
    out = root / "run_learn"
    _run(["--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out),
          *_overrides(root, **{"train.max_steps": 60, "train.epochs": 10, "model.variant": "xdeepint",
                               "train.eval_every": 20})])
    rep = json.loads((out / "report.json").read_text())
    assert rep["eval"]["ne"] < 0.9  # a constant predictor at the base rate has NE 1


# ---------------------------------------------------------------------------------------------------------
# Issue 16: the report is of the best evaluated model, epochs are flagged, a logistic-regression baseline.
# ---------------------------------------------------------------------------------------------------------

def test_report_is_of_the_best_model_with_the_last_beside_it_and_a_logreg_baseline(tmp_path_factory):
    """Evaluation labels flipped: the more the model learns the training day, the worse its evaluation NE,
    so the curve's minimum comes early and the last model is worse. Three epochs of 20 steps."""
    from test_baseline import newton_logreg, one_hot

    from schemas.ebf import TARGET_COLUMNS

    root = tmp_path_factory.mktemp("train_flip")
    rows = flipped_eval_rows()
    write_ebf_table(rows, str(root / "ebf_examples"))
    out = root / "run"
    res = _run(["--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out),
                *_overrides(root, **{"train.epochs": 3, "train.logreg_l2": 0.01})])
    rep = json.loads((out / "report.json").read_text())
    steps_per_epoch = 2 * ROWS_PER_PARTITION // 32  # both segments of the training day, batches of 32
    assert rep["steps_per_epoch"] == steps_per_epoch == 20 and rep["steps"] == 60
    assert rep["epoch_boundaries"] == [20, 40]
    assert "one-epoch phenomenon" in res.stderr and "[20, 40]" in res.stderr
    curve = rep["curve"]
    assert [c["step"] for c in curve] == list(range(4, 61, 4))
    nes = [c["eval_ne"] for c in curve]
    best = int(np.argmin(nes))
    assert nes[-1] > nes[best]  # the fixture does what it says: the last model is worse than the best
    assert rep["best_step"] == curve[best]["step"]
    # the reported model is the best one: its final evaluation (every row, as the curve's) equals the minimum
    assert rep["eval"]["ne"] == pytest.approx(nes[best], rel=1e-6)
    assert rep["last"]["step"] == 60 and rep["last"]["eval"]["ne"] == pytest.approx(nes[-1], rel=1e-6)
    pred = np.load(out / "eval_predictions.npz")  # the predictions kept are the reported model's
    assert rep["eval"]["ne"] == pytest.approx(_ne(pred["label"], pred["p"]), rel=1e-6)
    import torch

    best_pt = torch.load(out / "best.pt", weights_only=False)
    assert best_pt["step"] == rep["best_step"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["step"] == 60  # --resume: the last state
    summary = (out / "summary.md").read_text()
    assert f"best evaluated model (step {rep['best_step']})" in summary and "last model (step 60)" in summary
    # the baseline: fitted on the rows of the first epoch (every training-day row), scored on the evaluation
    # rows; against an independent Newton fit of the same objective on a dense one-hot design
    lr = rep["logreg_baseline"]
    train = [r for r in rows if r["ds"] == DAYS[0]]
    ev = [r for r in rows if r["ds"] == DAYS[1]]
    assert lr["train_rows"] == len(train) and lr["n"] == len(ev)
    ids = lambda rs: np.array([[r[c] for c in TARGET_COLUMNS] for r in rs])  # noqa: E731
    theta = newton_logreg(one_hot(ids(train), 101), np.array([r["label"] for r in train], float), 0.01)
    ey = np.array([r["label"] for r in ev], float)
    assert lr["ne"] == pytest.approx(_ne(ey, 1 / (1 + np.exp(-one_hot(ids(ev), 101) @ theta))), rel=1e-5)
    beats = rep["eval"]["ne"] < lr["ne"]
    assert ("DynInt beats it" in summary) == beats and ("DynInt does not beat this baseline" in summary) == (not beats)


# ---------------------------------------------------------------------------------------------------------
# Training killed mid-epoch resumes from its last checkpoint (issue 9; docs/RELIABILITY.md). Here rather than
# in tests/test_reliability.py, which is a Spark-side file: this one runs in the training environment.
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_training_sigkill_resumes_to_same_steps(tmp_path):
    import torch

    rows = _rows()
    path = str(tmp_path / "ebf_examples")
    write_ebf_table(rows, path)
    steps = 24
    args = ["--config", str(ROOT / "conf" / "local.yaml"), *_overrides(tmp_path, **{"train.max_steps": steps})]
    train_py = str(ROOT / "training" / "train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    full, killed = tmp_path / "full", tmp_path / "killed"
    res = subprocess.run([sys.executable, train_py, "--out", str(full), *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    p = popen_group([sys.executable, train_py, "--out", str(killed), *args], tmp_path / "train-killed.log")
    deadline = time.time() + 300
    try:
        while time.time() < deadline and p.poll() is None and not (killed / "checkpoint.pt").exists():
            time.sleep(0.02)
    finally:
        kill_group(p)
    assert (killed / "checkpoint.pt").exists(), (tmp_path / "train-killed.log").read_text()[-3000:]
    assert not (killed / "report.json").exists()  # killed before the end
    saved = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=False)["state"]["step"]
    assert 0 < saved < steps
    res = subprocess.run([sys.executable, train_py, "--out", str(killed), "--resume", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    a = json.loads((full / "rank_0.json").read_text())
    b = json.loads((killed / "rank_0.json").read_text())
    assert a["steps"] == b["steps"] == steps
    assert b["param_sum"] == pytest.approx(a["param_sum"], rel=1e-9, abs=1e-9)
    curves = [[c["step"] for c in json.loads((d / "report.json").read_text())["curve"]] for d in (full, killed)]
    assert curves[0] == curves[1]  # the evaluations before the kill survive in the resumed run's report
    print(f"training killed after checkpoint at step {saved}, resumed to {b['steps']}")


def test_train_reads_each_day_as_its_last_published_run(tmp_path):
    """Issue 15: ``training/train.py`` without ``--version`` trains and evaluates on each day as the last run that
    published it (the run ledger), not on the table's latest version. v0: the rows of both days, published for
    each; v1: the evaluation day replaced by the same rows with flipped labels, by a build killed before its
    ledger row. The evaluation labels say which rows were read: 158 of 640 positive as written at v0, 482 flipped."""
    path = str(tmp_path / "ebf_examples")
    rows, flipped = _rows(), flipped_eval_rows()
    ledger = [{"op": "ledger", "lake": str(tmp_path), "run_id": f"build-{ds}", "job": "build_ebf", "ds": ds,
               "versions": {"ebf_examples": 0}} for ds in DAYS]
    spark_steps([{"op": "write_ebf", "rows": rows, "path": path, "repartition": 2}, *ledger,
                 {"op": "write_ebf", "rows": [r for r in flipped if r["ds"] == DAYS[1]], "path": path,
                  "mode": "overwrite", "where": f"ds = '{DAYS[1]}'", "repartition": 2}])
    positives = {name: sum(r["label"] for r in rs if r["ds"] == DAYS[1]) for name, rs in
                 (("published", rows), ("killed", flipped))}
    assert positives["published"] + positives["killed"] == 2 * ROWS_PER_PARTITION  # flipped: 158 and 482
    assert positives["published"] != positives["killed"]
    for name, version in (("published", None), ("killed", 1)):
        out = tmp_path / name
        _run(["--config", str(ROOT / "conf" / "local.yaml"), "--out", str(out),
              *([] if version is None else ["--version", str(version)]),
              *_overrides(tmp_path, **{"train.max_steps": 4, "train.logreg_baseline": "false"})])
        rep = json.loads((out / "report.json").read_text())
        # D1 rolls forward to v1 (v1 touched D2 only); D2 stays at the published v0 unless v1 is pinned
        assert rep["day_versions"] == ({DAYS[0]: 1, DAYS[1]: 0} if version is None else {d: 1 for d in DAYS})
        labels = np.load(out / "eval_predictions.npz")["label"]
        assert len(labels) == 2 * ROWS_PER_PARTITION and int(labels.sum()) == positives[name]
