"""DynInt throughput on one host, in one call: the GPU benchmark of issue 19 (and its CPU smoke run).

    bash bench/gpu.sh run [--out bench/results_gpu.json]      # on a GPU host (bench/gpu.sh sets up the packages)
    .venv-train/bin/python bench/gpu.py --smoke --out /tmp/gpu_smoke.json   # CPU, tiny sizes, the same code paths

What it measures, for DynInt-DWP, DGP and xDeepInt (``--variants``) at batch 4096 and 16384 (``--batch-sizes``),
bf16 autocast, eager and ``torch.compile`` (``--modes``), training (forward + backward + Adam) and inference
(forward + sigmoid, no grad):

- ``source: device``: samples/s from batches already on the device (the upper bound): ``--device-batches``
  distinct batches read once from the table, moved to the device and cycled;
- ``source: loader``: samples/s end to end: ``training.loader.EbfLoader`` reading the Delta table with
  ``--loader-workers`` reader threads per segment (pinned host memory on CUDA, ``non_blocking`` copies), as
  ``training/train.py`` does;
- the loader alone (no model, no copy) at each batch size;
- with more than one GPU (or ``--smoke``, which uses two CPU processes and gloo): ``torchrun
  --nproc_per_node=<gpus>`` on the first variant and batch size, eager, training, both sources, and the
  scaling against one device.

Each figure is ``steps x batch / seconds`` over ``--steps`` steps after ``--warmup`` (the first warm-up step of
a compiled model holds the compilation, reported as ``first_step_s``); CUDA is synchronised before the clock
stops. Rows are run eager first, compiled last, and a row that would start after ``--budget-s`` is recorded as
skipped (with its reason), so a run fits its slot on a shared GPU host.

The table: ``--rows`` generated ``ebf_examples`` rows (baseline policy, 11 ad sequences of ``--seq-len``),
written with pyarrow and a minimal Delta log by ``bench/bench_loader.make_table`` in a process pool (no JVM, no
Spark), under ``$DYNAMIX_BENCH_DATA`` (default ``/tmp/dynamix-bench``) and reused when present.

The model is ``ModelConfig``'s defaults (the cluster profile: D = 16, 2 PIN layers, h = 2, K = 4, 100,003
hash buckets); ``--smoke`` shrinks everything and uses ``torch.compile(backend="eager")`` (dynamo's tracing,
no code generation) so that the CI run takes seconds; its figures are not GPU figures.

One JSON object (``--out``; also printed): host, settings, table, ``loader``, ``rows``, ``ratios`` (loader over
device per row pair), ``targets`` (issue 19: loader >= 50% of device for DWP training at batch 4096; loader
alone >= 1M samples/s) and ``ddp``. ``--markdown`` prints the BENCHMARKS.md rows of a results file.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_loader import DATA, DS, make_table  # noqa: E402
from dynamix_spark.config import EbfConfig, ModelConfig  # noqa: E402
from schemas.ebf import EBF_SOURCES  # noqa: E402
from training.loader import EbfLoader  # noqa: E402
from training.model import DynIntModel  # noqa: E402

POLICY = "baseline"
TARGET_LOADER_SHARE = 0.5  # issue 19: end to end >= 50% of device-resident, DWP training at batch 4096
TARGET_LOADER_ALONE = 1_000_000  # samples/s of the loader alone on a 16-core host


def _ebf(seq_len: int) -> EbfConfig:
    return EbfConfig(seq_len={s: seq_len for s in EBF_SOURCES})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _loader(table: Path, args, batch_size: int, device: torch.device, shard: int = 0, shards: int = 1,
            seed: int = 1) -> EbfLoader:
    return EbfLoader(str(table), 0, POLICY, [DS], _ebf(args.seq_len), batch_size=batch_size, cur_shard=shard,
                     shard_count=shards, seed=seed, workers=args.loader_workers, shuffle_buffer=args.shuffle_buffer,
                     pin_memory=device.type == "cuda")


def _model_cfg(args, variant: str) -> ModelConfig:
    base = ModelConfig()
    if args.smoke:
        base = dataclasses.replace(base, embed_dim=8, hash_buckets=101, rank=2)
    return dataclasses.replace(base, variant=variant)


class _Step:
    """One training or inference step of ``model`` (optionally compiled) on a device-resident batch."""

    def __init__(self, model: DynIntModel, phase: str, mode: str, device: torch.device, precision: str,
                 compile_backend: str) -> None:
        self.model, self.phase, self.device, self.precision = model, phase, device, precision
        # static shapes: one graph per batch size, as a training job with a fixed batch compiles it
        self.forward = torch.compile(model, backend=compile_backend, dynamic=False) if mode == "compile" else model
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3) if phase == "train" else None
        self.loss_fn = torch.nn.BCEWithLogitsLoss()

    def __call__(self, b) -> None:
        if self.phase == "train":
            self.model.train()
            with _autocast(self.device, self.precision):
                logits = self.forward(b).float()
                loss = self.loss_fn(logits, b.label) + self.model.regularization()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        else:
            self.model.eval()
            with torch.no_grad(), _autocast(self.device, self.precision):
                torch.sigmoid(self.forward(b).float())


def _timed(step, batches, warmup: int, steps: int, device: torch.device, batch_size: int) -> dict:
    """Run ``warmup`` then ``steps`` steps over the iterable ``batches``; samples/s of the timed steps."""
    it = iter(batches)
    t0 = time.perf_counter()
    first = None
    for _ in range(warmup):
        step(next(it))
        _sync(device)
        if first is None:
            first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step(next(it))
    _sync(device)
    secs = time.perf_counter() - t0
    return {"samples_per_s": steps * batch_size / secs, "seconds": secs, "steps": steps,
            "first_step_s": first}


def _to_device(loader: EbfLoader, device: torch.device, epoch: int = 0):
    """The loader's batches moved to the device as train.py moves them (pinned, non_blocking on CUDA)."""
    batches = loader.iter_epoch(epoch)
    try:
        for b in batches:
            yield b.to(device, non_blocking=True)
    finally:
        batches.close()


def _loader_alone(table: Path, args, batch_size: int, device: torch.device) -> dict:
    loader = _loader(table, args, batch_size, device)
    batches = loader.iter_epoch(0)
    with contextlib.closing(batches):
        out = _timed(lambda b: None, batches, args.warmup, args.loader_steps, torch.device("cpu"), batch_size)
    return {"batch_size": batch_size, "workers_per_segment": args.loader_workers, "pinned": loader.pin_memory,
            **_round(out)}


def _round(d: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def _measure(table: Path, args, device: torch.device, variant: str, batch_size: int, mode: str,
             device_batches: list) -> list[dict]:
    """The four rows of one (variant, batch, mode): train/infer x device/loader."""
    torch.manual_seed(0)
    if mode == "compile":  # each (variant, batch) compiles afresh; dynamo's recompile limit never turns a
        torch._dynamo.reset()  # compiled row into a silently eager one
    model = DynIntModel(_model_cfg(args, variant)).to(device)
    rows = []
    for phase in ("train", "infer"):
        step = _Step(model, phase, mode, device, args.precision, args.compile_backend)
        key = {"variant": variant, "batch_size": batch_size, "precision": args.precision, "mode": mode,
               "phase": phase}
        rows.append({**key, "source": "device",
                     **_round(_timed(step, itertools.cycle(device_batches), args.warmup, args.steps, device,
                                     batch_size))})
        gen = _to_device(_loader(table, args, batch_size, device, seed=2), device)
        with contextlib.closing(gen):
            rows.append({**key, "source": "loader", **_round(_timed(step, gen, args.warmup, args.steps, device,
                                                                    batch_size))})
    return rows


def _host(device: torch.device) -> dict:
    import pyarrow

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "numpy": np.__version__, "pyarrow": pyarrow.__version__, "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "device": str(device), "hostname": platform.node()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1))
    else:
        info.update(gpu=None, gpu_count=0)
    return info


def _ratios(rows: list[dict]) -> list[dict]:
    by = {(r["variant"], r["batch_size"], r["mode"], r["phase"], r["source"]): r for r in rows if "samples_per_s" in r}
    out = []
    for (v, b, m, ph, src), r in by.items():
        dev = by.get((v, b, m, ph, "device"))
        if src == "loader" and dev:
            out.append({"variant": v, "batch_size": b, "mode": m, "phase": ph,
                        "loader_over_device": round(r["samples_per_s"] / dev["samples_per_s"], 4)})
    return out


def _targets(rows: list[dict], loader: list[dict], variant: str, batch_size: int) -> dict:
    share = next((r["loader_over_device"] for r in _ratios(rows) if (r["variant"], r["batch_size"], r["mode"],
                                                                      r["phase"]) == (variant, batch_size, "eager",
                                                                                      "train")), None)
    alone = next((x["samples_per_s"] for x in loader if x["batch_size"] == batch_size), None)
    return {
        "loader_share_of_device": {"variant": variant, "batch_size": batch_size, "mode": "eager", "phase": "train",
                                   "value": share, "target": TARGET_LOADER_SHARE,
                                   "met": None if share is None else share >= TARGET_LOADER_SHARE},
        "loader_alone_samples_per_s": {"batch_size": batch_size, "value": alone, "target": TARGET_LOADER_ALONE,
                                       "met": None if alone is None else alone >= TARGET_LOADER_ALONE},
    }


# --- DDP ----------------------------------------------------------------------------------------------------

def _ddp_worker(args) -> None:
    """One rank under torchrun: the first variant and batch size, eager, training, device and loader sources;
    rank 0 writes the summed samples/s to ``--ddp-out``."""
    import torch.distributed as dist

    world, rank, local = (int(os.environ[k]) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if cuda else "gloo")
    table, variant, batch_size = Path(args.table), args.variants[0], args.batch_sizes[0]
    model = DynIntModel(_model_cfg(args, variant)).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if cuda else None,
                                                    find_unused_parameters=True)
    step = _Step(model, "train", "eager", device, args.precision, args.compile_backend)
    step.forward = ddp
    loader = _loader(table, args, batch_size, device, shard=rank, shards=world, seed=2)
    with contextlib.closing(_to_device(loader, device)) as gen:
        held = list(itertools.islice(gen, args.device_batches))
    out = {}
    for source in ("device", "loader"):
        dist.barrier()
        batches = itertools.cycle(held) if source == "device" else _to_device(loader, device, epoch=1)
        r = _timed(step, batches, args.warmup, args.steps, device, batch_size)
        if source == "loader":
            batches.close()
        t = torch.tensor([r["samples_per_s"], r["seconds"]], dtype=torch.float64,
                         device=device if cuda else "cpu")
        total = t.clone()
        dist.all_reduce(total)
        out[source] = {"samples_per_s": round(float(total[0]), 1), "rank0_seconds": round(r["seconds"], 4)}
    if rank == 0:
        Path(args.ddp_out).write_text(json.dumps({"world": world, "backend": dist.get_backend(), "variant": variant,
                                                  "batch_size_per_rank": batch_size, **out}))
    dist.barrier()
    dist.destroy_process_group()


def _run_ddp(table: Path, args, nproc: int, single: list[dict]) -> dict:
    out_file = Path(args.work) / "ddp.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), "--ddp-worker", "--table", str(table), "--ddp-out", str(out_file),
           "--variants", args.variants[0], "--batch-sizes", str(args.batch_sizes[0]), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--device-batches", str(args.device_batches), "--seq-len",
           str(args.seq_len), "--loader-workers", str(max(1, args.loader_workers // nproc)), "--shuffle-buffer",
           str(args.shuffle_buffer), "--precision", args.precision]
    if args.smoke:
        cmd.append("--smoke")
    if args.cpu:
        cmd.append("--cpu")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.ddp_timeout_s)
    if res.returncode != 0 or not out_file.exists():
        return {"nproc": nproc, "error": f"torchrun exited {res.returncode}", "log_tail": res.stderr[-3000:]}
    got = json.loads(out_file.read_text())
    got["wall_s"] = round(time.perf_counter() - t0, 2)
    for source in ("device", "loader"):
        one = next((r for r in single if (r["variant"], r["batch_size"], r["mode"], r["phase"], r["source"]) ==
                    (args.variants[0], args.batch_sizes[0], "eager", "train", source) and "samples_per_s" in r), None)
        if one:
            got[source]["single_samples_per_s"] = one["samples_per_s"]
            got[source]["scaling"] = round(got[source]["samples_per_s"] / one["samples_per_s"], 3)
            got[source]["efficiency"] = round(got[source]["scaling"] / nproc, 3)
    return got


# --- the run ------------------------------------------------------------------------------------------------

def _checkpoint(args, result: dict) -> None:
    """The result so far to --out (marked partial), so a host that ends the call early still leaves the rows."""
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result | {"partial": True}, indent=1) + "\n")


def run(args) -> dict:
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda:0") if cuda else torch.device("cpu")
    if not cuda:  # smoke: tiny ops, where one thread beats several on a busy host
        torch.set_num_threads(1 if args.smoke else max(1, os.cpu_count() or 1))
    t0 = time.perf_counter()
    table = make_table(args.rows, POLICY, args.seq_len, args.files, args.row_group_rows,
                       processes=args.gen_processes, root=Path(args.work))
    gen_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in table.rglob("*.parquet"))
    print(f"[gpu] {_host(device).get('gpu') or device}: table of {args.rows:,} rows, {size / 2 ** 20:,.0f} MiB, "
          f"generated in {gen_s:.1f} s", file=sys.stderr, flush=True)
    result = {
        "issue": 19, "smoke": args.smoke, "host": _host(device),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "markdown", "ddp_worker", "ddp_out")},
        "model": dataclasses.asdict(_model_cfg(args, "dwp")) | {"variant": None},
        "table": {"path": str(table), "rows": args.rows, "policy": POLICY, "seq_len": args.seq_len,
                  "files": 2 * args.files, "parquet_bytes": size, "generate_s": round(gen_s, 2)},
        "loader": [], "rows": [],
    }
    for b in args.batch_sizes:
        result["loader"].append(_loader_alone(table, args, b, device))
        print(f"[gpu] loader alone, batch {b}: {result['loader'][-1]['samples_per_s']:,.0f}/s", file=sys.stderr,
              flush=True)
    _checkpoint(args, result)
    held = {}
    for b in args.batch_sizes:
        gen = _to_device(_loader(table, args, b, device, seed=3), device)
        with contextlib.closing(gen):
            held[b] = list(itertools.islice(gen, args.device_batches))
    for mode in args.modes:  # eager first: the compiled rows are the ones a tight budget drops
        for variant in (args.compile_variants or args.variants) if mode == "compile" else args.variants:
            for b in (args.compile_batch_sizes or args.batch_sizes) if mode == "compile" else args.batch_sizes:
                if time.perf_counter() > deadline:
                    for phase, source in itertools.product(("train", "infer"), ("device", "loader")):
                        result["rows"].append({"variant": variant, "batch_size": b, "precision": args.precision,
                                               "mode": mode, "phase": phase, "source": source,
                                               "skipped": f"budget of {args.budget_s} s spent"})
                    continue
                t0 = time.perf_counter()
                measured = _measure(table, args, device, variant, b, mode, held[b])
                result["rows"] += measured
                print(f"[gpu] {variant} batch {b} {mode}: {time.perf_counter() - t0:.1f} s; "
                      + "; ".join(f"{r['phase']}/{r['source']} {r['samples_per_s']:,.0f}/s" for r in measured),
                      file=sys.stderr, flush=True)
                _checkpoint(args, result)
    result["ratios"] = _ratios(result["rows"])
    result["targets"] = _targets(result["rows"], result["loader"], args.variants[0], args.batch_sizes[0])
    nproc = 2 if (args.smoke and not cuda) else (torch.cuda.device_count() if cuda else 0)
    if args.no_ddp or nproc < 2:
        result["ddp"] = {"skipped": "--no-ddp" if args.no_ddp else f"{max(nproc, 1)} device(s): nothing to scale"}
    elif time.perf_counter() > deadline:
        result["ddp"] = {"skipped": f"budget of {args.budget_s} s spent"}
    else:
        result["ddp"] = _run_ddp(table, args, nproc, result["rows"])
    result["wall_s"] = round(time.perf_counter() - t_start, 2)
    return result


def markdown(result: dict) -> str:
    """The BENCHMARKS.md rows of one results file."""
    h = result["host"]
    gpu = h.get("gpu") or f"CPU ({h['cpu_count']} cores; smoke, not a GPU figure)"
    lines = [f"{gpu}, torch {h['torch']}, {h['cpu_count']} host cores, {result['table']['rows']:,} rows "
             f"(seq {result['table']['seq_len']}), {result['settings']['loader_workers']} reader threads per "
             f"segment; {result['settings']['precision']}:", "",
             "| variant | batch | mode | phase | device-resident samples/s | end to end samples/s | share |",
             "|---|---|---|---|---|---|---|"]
    by = {(r["variant"], r["batch_size"], r["mode"], r["phase"], r["source"]): r for r in result["rows"]}
    fmt = lambda r: f"{r['samples_per_s']:,.0f}" if r and "samples_per_s" in r else (r or {}).get("skipped", "-")  # noqa: E731
    for (v, b, m, ph, src), r in by.items():
        if src != "device":
            continue
        lo = by.get((v, b, m, ph, "loader"))
        share = (f"{lo['samples_per_s'] / r['samples_per_s']:.0%}" if lo and "samples_per_s" in lo
                 and "samples_per_s" in r else "-")
        lines.append(f"| {v} | {b} | {m} | {ph} | {fmt(r)} | {fmt(lo)} | {share} |")
    lines.append("")
    lines += [f"- loader alone, batch {x['batch_size']}: {x['samples_per_s']:,.0f} samples/s" for x in result["loader"]]
    for name, t in result["targets"].items():
        lines.append(f"- target {name}: {t['value']} (target {t['target']}): "
                     f"{'met' if t['met'] else 'not met' if t['met'] is not None else 'not measured'}")
    ddp = result.get("ddp") or {}
    if "world" in ddp:
        for src in ("device", "loader"):
            d = ddp[src]
            lines.append(f"- DDP x{ddp['world']} ({ddp['backend']}), {ddp['variant']} batch {ddp['batch_size_per_rank']}"
                         f" per rank, {src}: {d['samples_per_s']:,.0f} samples/s, scaling {d.get('scaling')} "
                         f"(efficiency {d.get('efficiency')})")
    else:
        lines.append(f"- DDP: {ddp.get('skipped') or ddp.get('error')}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, compile backend 'eager' (CI)")
    p.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--files", type=int, default=16, help="files per segment")
    p.add_argument("--row-group-rows", type=int, default=65_536)
    p.add_argument("--gen-processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--variants", nargs="+", default=["dwp", "dgp", "xdeepint"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[4096, 16384])
    p.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--compile-variants", nargs="+", help="compiled rows for these variants only (default: all)")
    p.add_argument("--compile-batch-sizes", nargs="+", type=int, help="... and batch sizes (default: all)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--loader-steps", type=int, default=60)
    p.add_argument("--device-batches", type=int, default=8)
    p.add_argument("--loader-workers", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="reader threads per segment (baseline has 2 segments)")
    p.add_argument("--shuffle-buffer", type=int, default=65_536)
    p.add_argument("--budget-s", type=float, default=360.0, help="start no row after this many seconds")
    p.add_argument("--no-ddp", action="store_true")
    p.add_argument("--ddp-timeout-s", type=float, default=240.0)
    p.add_argument("--work", default=str(DATA.parent / "gpu"), help="where the table is generated")
    p.add_argument("--out", help="write the JSON here too")
    p.add_argument("--markdown", metavar="RESULTS_JSON", help="print BENCHMARKS.md rows of a results file")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ddp-out", help=argparse.SUPPRESS)
    p.add_argument("--table", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:  # the same code paths, sized for CI on 2 shared cores
        explicit = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--"))
        small = {"rows": 4_000, "seq_len": 4, "files": 2, "row_group_rows": 500, "gen_processes": 1,
                 "batch_sizes": [64, 128], "steps": 2, "warmup": 1, "loader_steps": 4, "device_batches": 2,
                 "loader_workers": 1, "shuffle_buffer": 256, "compile_backend": "eager", "budget_s": 120.0,
                 # dynamo's tracing takes 20-30 s per model on 2 busy cores: one compiled (variant, batch)
                 "compile_variants": args.variants[:1], "compile_batch_sizes": None,
                 "ddp_timeout_s": 120.0, "cpu": True}
        for k, v in small.items():
            if f"--{k.replace('_', '-')}" not in explicit:
                setattr(args, k, v)
        if args.compile_batch_sizes is None:
            args.compile_batch_sizes = args.batch_sizes[:1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.ddp_worker:
        _ddp_worker(args)
        # A rank's interpreter teardown can abort after its work is done and the process group destroyed
        # ("terminate called without an active exception", SIGABRT: a native thread still joinable at exit; 1 smoke
        # run in 4 on 2 CPU ranks, 2026-12-04), and torchrun then fails the whole run. Leave without the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    result = run(args)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    print(markdown(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
