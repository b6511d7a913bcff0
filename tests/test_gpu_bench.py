"""bench/gpu.py --smoke (issue 19): the GPU benchmark's code paths on CPU with tiny sizes, so that the one prepared
GPU call cannot rot between GPU sessions. Training side (torch, Petastorm, no PySpark); the table is the
benchmark's own generated Delta table (pyarrow and a hand-written log)."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

from conftest import ROOT

VARIANTS = ("dwp", "dgp", "xdeepint")
SMOKE_BATCHES = (64, 128)


def test_gpu_bench_smoke_has_every_row_with_positive_figures(tmp_path):
    out = tmp_path / "gpu_smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--budget-s", "600",
                          "--work", str(tmp_path / "work"), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["smoke"] is True and r["host"]["device"] == "cpu" and r["table"]["rows"] == 4000
    # eager: every variant x batch x phase x source; compiled (dynamo, backend "eager"): the first variant and batch
    want = {(v, b, "eager", ph, src) for v, b, ph, src in itertools.product(VARIANTS, SMOKE_BATCHES, ("train", "infer"),
                                                                          ("device", "loader"))}
    want |= {("dwp", 64, "compile", ph, src) for ph, src in itertools.product(("train", "infer"), ("device", "loader"))}
    got = {(x["variant"], x["batch_size"], x["mode"], x["phase"], x["source"]): x for x in r["rows"]}
    assert set(got) == want
    for key, row in got.items():
        assert row["precision"] == "bf16", key
        assert row["samples_per_s"] > 0 and row["steps"] == 2, key
        assert abs(row["samples_per_s"] - row["steps"] * key[1] / row["seconds"]) < 1e-3 * row["samples_per_s"], key
    assert [x["batch_size"] for x in r["loader"]] == list(SMOKE_BATCHES)
    assert all(x["samples_per_s"] > 0 for x in r["loader"])
    # one loader/device ratio per measured (variant, batch, mode, phase), equal to the two rows' quotient
    assert len(r["ratios"]) == len(want) // 2
    for q in r["ratios"]:
        k = (q["variant"], q["batch_size"], q["mode"], q["phase"])
        expect = got[(*k, "loader")]["samples_per_s"] / got[(*k, "device")]["samples_per_s"]
        assert abs(q["loader_over_device"] - expect) < 1e-3 * expect + 1e-4
    t = r["targets"]
    assert t["loader_share_of_device"]["value"] > 0 and t["loader_alone_samples_per_s"]["value"] > 0
    ddp = r["ddp"]  # two CPU processes (gloo) stand for the GPUs
    assert ddp.get("world") == 2 and ddp.get("backend") == "gloo", ddp  # the error and its log tail otherwise
    for src in ("device", "loader"):
        assert ddp[src]["samples_per_s"] > 0 and ddp[src]["scaling"] > 0
    md = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--markdown", str(out)], capture_output=True,
                        text=True, env=env, timeout=120)
    assert md.returncode == 0, md.stderr[-2000:]
    assert md.stdout.count("\n| ") == len(want) // 2 + 1  # the header and one line per (variant, batch, mode, phase)
    assert "smoke, not a GPU figure" in md.stdout
