"""DynInt training on a pinned snapshot of ``ebf_examples``: DDP, NE / AUC / log loss, throughput, resume.

    torchrun --nproc_per_node=2 training/train.py --config conf/local.yaml [--version V] [--out DIR]
    python training/train.py --config conf/local.yaml            # one process
    [--resume] [KEY=VALUE overrides, e.g. train.policy=remove_passive model.variant=da]

- One process per device: NCCL on GPUs, gloo on CPU; bf16 autocast on GPU.
- Time split: the last ``ebf.eval_days`` of the snapshot's ``ds`` (for the policy) are evaluation.
- Every rank runs the same number of steps (the loader computes them from the Delta log); only rank 0
  evaluates, logs, checkpoints and writes the report; early stopping on evaluation NE is decided on
  rank 0 and broadcast.
- ``<out>/checkpoint.pt`` (model, optimizer, step, best NE, curve) every ``train.checkpoint_every`` steps;
  ``--resume`` continues at the saved step with the same data order (the loader is seeded per epoch).
- ``<out>/best.pt``: the weights of the best evaluated model (lowest evaluation NE) and its step. The report is
  of that model (on early stopping and at the end of any run), with the last model's NE beside it;
  ``checkpoint.pt`` stays the last state, for ``--resume``.
- More than one epoch: the log says so at the start, and the report and the curve mark the epoch boundaries
  (CTR models overfit abruptly on a second pass over the same rows).
- Every report carries a sanity baseline: a logistic regression on the target features
  (``training/baseline.py``) fitted on the rows DynInt trained on, scored on the same evaluation rows; the
  summary says in words when DynInt does not beat it.
- ``<out>/report.json``, ``<out>/summary.md`` and ``<out>/ne_curve.png`` (NE over steps, paper Figure 5).
- What a person watches while it runs (rank 0): TensorBoard event files in ``<out>/`` beside the PNG
  (``tensorboard --logdir <out>`` or the runs' parent folder): ``train/loss``, ``train/ne`` (rank 0's batches
  since the last log point) and ``train/samples_per_s`` every ``--log-every`` steps (default
  :data:`LOG_EVERY`), ``eval/ne``, ``eval/auc``, ``eval/log_loss`` at every evaluation (``train.eval_every``);
  and, on a terminal, a progress bar in samples with samples/s, loss and NE (quiet when stderr is not a TTY).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dynamix_spark.config import Config, ConfigError, config_to_dict, load_config  # noqa: E402
from training.checkpoint import BEST, load_best, save_best, save_checkpoint  # noqa: E402
from training.costs import cost_per_example  # noqa: E402
from training.delta_snapshot import DeltaSnapshot, training_snapshot  # noqa: E402
from training.evaluation import (  # noqa: E402
    autocast,
    evaluate,
    evaluate_prefix,
    headline,
    logreg_baseline,
    measure_loader_rate,
    measure_model_inference_rate,
)
from training.loader import EbfLoader  # noqa: E402
from training.metrics import BinaryMetrics  # noqa: E402
from training.model import DynIntModel  # noqa: E402
from training.run_report import plot_curve, summary_text  # noqa: E402
from training.train_log import TrainLog  # noqa: E402


# Train loss / NE / samples/s go to TensorBoard every this many steps (``--log-every``). The config key
# ``train.log_every`` belongs in TrainConfig (dynamix_spark/config.py) and is not there yet.
LOG_EVERY = 10


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:  # CPU processes share the cores: more intra-op threads than cores makes small ops 100x slower
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, device)


def split_days(snapshot: DeltaSnapshot, policy: str, eval_days: int, train_days: int = 0
               ) -> tuple[list[str], list[str]]:
    """(train days, evaluation days) of ``snapshot``: the last ``eval_days`` of the policy's days are evaluation,
    the days before them training (the last ``train_days`` of them; 0: all)."""
    days = sorted({f.partition_values["ds"] for f in snapshot.files if f.partition_values.get("policy") == policy})
    if len(days) < 2:
        raise RuntimeError(f"{snapshot.table_path}@v{snapshot.version}: policy {policy!r} has {len(days)} day(s) "
                           f"{days}; training needs "
                           "at least 2 (train days + ebf.eval_days)")
    k = min(eval_days, len(days) - 1)
    train = days[:-k]
    return (train[-train_days:] if train_days else train), days[-k:]


def _broadcast_flag(flag: bool, d: Dist) -> bool:
    if d.world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=d.device if d.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def lr_at(tc, step: int, total: int) -> float:
    """``train.lr_schedule``'s learning rate for the update of step ``step`` (0-based) of ``total``: constant;
    linear, lr * (1 - step / total); cosine, lr * (1 + cos(pi * step / total)) / 2. Both decays reach 0 after the
    last update, and the first update uses lr."""
    frac = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
    if tc.lr_schedule == "linear":
        return tc.lr * (1.0 - frac)
    if tc.lr_schedule == "cosine":
        return tc.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    return tc.lr


def set_lr(opt: torch.optim.Optimizer, tc, step: int, total: int) -> None:
    lr = lr_at(tc, step, total)
    for g in opt.param_groups:
        g["lr"] = lr


def train(cfg: Config, table: str, out_dir: Path, d: Dist, version: int | None = None, resume: bool = False,
          log_every: int = LOG_EVERY, snapshot: DeltaSnapshot | None = None) -> dict:
    """Train on ``table`` read as ``snapshot``, else at ``version``, else each day as the last run that published
    it left it (the run ledger: ``training.delta_snapshot.training_snapshot``); the report records each day's
    version (``day_versions``)."""
    tc = cfg.train
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    snap = snapshot if snapshot is not None else training_snapshot(table, version)
    train_days, eval_days = split_days(snap, tc.policy, cfg.ebf.eval_days, tc.train_days)
    torch.manual_seed(tc.seed)
    cuda = d.device.type == "cuda"
    loader = EbfLoader.from_config(table, None, cfg, train_days, cur_shard=d.rank, shard_count=d.world,
                                   pin_memory=cuda, snapshot=snap)
    steps_per_epoch = loader.steps_per_epoch
    if steps_per_epoch == 0:
        raise RuntimeError(f"no full batch of {tc.batch_size} per rank in {train_days} (world {d.world})")
    total = steps_per_epoch * tc.epochs
    if tc.max_steps:
        total = min(total, tc.max_steps)
    model = DynIntModel(cfg.model).to(d.device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    state = {"step": 0, "best_ne": None, "bad_evals": 0, "curve": []}
    ckpt = out_dir / "checkpoint.pt"
    if resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=d.device, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
    ddp = (torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[d.device.index] if d.device.type == "cuda" else None,
        find_unused_parameters=True)  # a removed attribute's embedding gets no gradient in its batches
        if d.world > 1 else model)
    eval_loader = EbfLoader.from_config(table, None, cfg, eval_days, shuffle_buffer=0, shuffle=False,
                                        drop_last=False,  # every evaluation row is scored
                                        pin_memory=cuda, snapshot=snap) if d.is_main else None
    loss_fn = torch.nn.BCEWithLogitsLoss()
    train_metrics = BinaryMetrics()
    step, samples, train_secs, loader_wait_s = state["step"], 0, 0.0, 0.0
    stop = False
    tlog = (TrainLog(out_dir, log_every, total, step, tc.batch_size * d.world, f"train {cfg.model.variant}/{tc.policy}")
            if d.is_main else None)
    boundaries = epoch_boundaries(steps_per_epoch, total)
    if boundaries and d.is_main:
        print(f"[train] {tc.epochs} epochs configured: {total} steps over {steps_per_epoch} steps of rows per "
              f"epoch, so the same rows are trained on again from step {boundaries[0] + 1}. Embedding-heavy CTR "
              "models tend to overfit abruptly after the first epoch (the one-epoch phenomenon); the NE curve "
              f"marks the epoch boundaries {boundaries} and the report is of the best evaluated model.",
              file=sys.stderr, flush=True)
    while step < total and not stop:
        epoch, skip = divmod(step, steps_per_epoch)
        t0 = t_ready = time.perf_counter()
        for i, b in enumerate(loader.iter_epoch(epoch)):
            if i < skip:  # resume: the same order as the interrupted run, already trained on
                t_ready = time.perf_counter()
                continue
            loader_wait_s += time.perf_counter() - t_ready  # this rank's wait for the batch (issue 19)
            b = b.to(d.device, non_blocking=True)
            with autocast(d.device):
                logits = ddp(b).float()
                loss = loss_fn(logits, b.label.float()) + model.regularization()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            set_lr(opt, tc, step, total)  # from the step alone: a resumed run continues the same schedule
            opt.step()
            p_train = torch.sigmoid(logits.detach())
            train_metrics.update(b.label.float().detach(), p_train)
            step += 1
            samples += len(b) * d.world
            if tlog:
                tlog.update(step, loss.detach(), b.label.detach(), p_train)
            if step % tc.eval_every == 0 or step == total:
                train_secs += time.perf_counter() - t0
                stop = _eval_and_checkpoint(cfg, model, opt, eval_loader, state, step, train_metrics, out_dir, d,
                                            tlog)
                t0 = time.perf_counter()
            elif step % tc.checkpoint_every == 0 and d.is_main:
                save_checkpoint(ckpt, model, opt, {**state, "step": step})
            t_ready = time.perf_counter()
            if step >= total or stop:
                break
        else:
            train_secs += time.perf_counter() - t0
    if tlog:
        tlog.close()
    _write_rank_file(out_dir, d, step, model)  # the last state, which checkpoint.pt also holds
    report = None
    if d.is_main:
        report = _final_report(cfg, table, snap, out_dir, d, model, loader, eval_loader, state, tlog,
                               {"train_days": train_days, "eval_days": eval_days, "step": step,
                                "steps_per_epoch": steps_per_epoch, "boundaries": boundaries, "samples": samples,
                                "train_secs": train_secs, "loader_wait_s": loader_wait_s, "log_every": log_every})
    if d.world > 1:
        dist.barrier()
    return report or {"steps": step}


def _final_report(cfg: Config, table: str, snap: DeltaSnapshot, out_dir: Path, d: Dist, model, loader: EbfLoader,
                  eval_loader: EbfLoader, state: dict, tlog, run: dict) -> dict:
    """Rank 0, after the last step: evaluate the last and the best model, the rates and the baseline, and write
    report.json, summary.md and the NE curve; the report describes the best evaluated model."""
    tc = cfg.train
    train_days, eval_days, step = run["train_days"], run["eval_days"], run["step"]
    steps_per_epoch, boundaries, samples = run["steps_per_epoch"], run["boundaries"], run["samples"]
    train_secs, loader_wait_s, log_every = run["train_secs"], run["loader_wait_s"], run["log_every"]
    preds = out_dir / "eval_predictions.npz"
    best = load_best(out_dir / BEST, d.device)
    if best is not None and best["step"] != step:
        last = evaluate_prefix(model, eval_loader, tc.final_eval_max_batches, d.device)
        model.load_state_dict(best["model"])  # the report is of the best evaluated model
        final = evaluate_prefix(model, eval_loader, tc.final_eval_max_batches, d.device, keep_predictions=preds)
    else:
        final = last = evaluate_prefix(model, eval_loader, tc.final_eval_max_batches, d.device,
                                        keep_predictions=preds)
    best_step = best["step"] if best is not None else step
    loader_rate = measure_loader_rate(loader, min(steps_per_epoch, 50))
    model_rate = measure_model_inference_rate(model, eval_loader, d.device)
    logreg = (logreg_baseline(cfg, table, snap, train_days, eval_loader, min(step, steps_per_epoch) * d.world)
              if tc.logreg_baseline else None)
    eval_batches = eval_loader.iter_epoch(0)
    with contextlib.closing(eval_batches):  # bytes, lookups and FLOPs per example: not moved by the host's load
        costs = cost_per_example(model, eval_loader, eval_batches)
    report = {
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(), "table": table, "delta_version": snap.version,
        "day_versions": {ds: snap.day_versions[ds] for ds in (*train_days, *eval_days)},
        "policy": tc.policy, "variant": cfg.model.variant, "train_days": train_days, "eval_days": eval_days,
        "world_size": d.world, "device": str(d.device), "steps": step, "steps_per_epoch": steps_per_epoch,
        "epochs_configured": tc.epochs, "epoch_boundaries": boundaries,
        "train_samples_per_s": samples / train_secs if train_secs > 0 else None,
        # rank 0's seconds between finishing a step and receiving the next batch, over its training time
        "loader_wait_s": loader_wait_s, "loader_wait_share": loader_wait_s / train_secs if train_secs > 0 else None,
        "inference_samples_per_s": final["samples_per_s"],
        "inference_model_only_samples_per_s": model_rate,
        "loader_samples_per_s": loader_rate,
        "reported_model": "best", "best_step": best_step, "eval": final,
        "last": {"step": step, "eval": headline(last)},
        "logreg_baseline": logreg, "cost_per_example": costs,
        "curve": state["curve"], "loader": loader.describe(),
        "log_every": log_every, "tensorboard_dir": str(out_dir) if tlog.writer is not None else None,
        "config": config_to_dict(cfg),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "summary.md").write_text(summary_text(report))
    plot_curve(state["curve"], out_dir / "ne_curve.png", f"{cfg.model.variant} / {tc.policy}", boundaries,
               best_step)
    return report


def _write_rank_file(out_dir: Path, d: Dist, step: int, model: torch.nn.Module) -> None:
    """Per rank: steps run and a parameter checksum (DDP keeps ranks' parameters identical)."""
    with torch.no_grad():
        flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"rank_{d.rank}.json").write_text(json.dumps({
        "rank": d.rank, "world": d.world, "steps": step, "param_sum": float(flat.double().sum()),
        "param_abs_sum": float(flat.double().abs().sum()), "n_params": int(flat.numel())}))


def epoch_boundaries(steps_per_epoch: int, total: int) -> list[int]:
    """Steps after which the run starts another pass over the same rows (none for a single epoch)."""
    return list(range(steps_per_epoch, total, steps_per_epoch))


def _eval_and_checkpoint(cfg, model, opt, eval_loader, state, step, train_metrics, out_dir, d: Dist,
                         tlog: TrainLog | None = None) -> bool:
    stop = False
    if d.is_main:
        ev = evaluate_prefix(model, eval_loader, cfg.train.eval_max_batches, d.device)
        tr = train_metrics.compute()
        if tlog is not None:
            tlog.scalars(step, {"eval/ne": ev["ne"], "eval/auc": ev["auc"], "eval/log_loss": ev["log_loss"],
                                "train/ne_since_eval": tr["ne"]})
        state["curve"].append({"step": step, "eval_ne": ev["ne"], "train_ne": tr["ne"], "eval_auc": ev["auc"],
                               "eval_rows": ev["samples"]})
        print(json.dumps({"step": step, "eval_ne": round(ev["ne"], 5), "train_ne": round(tr["ne"], 5),
                          "eval_auc": round(ev["auc"], 4)}), file=sys.stderr, flush=True)
        if state["best_ne"] is None or ev["ne"] < state["best_ne"]:
            state["best_ne"], state["bad_evals"] = ev["ne"], 0  # best.pt records its step
            save_best(out_dir / BEST, model, step, ev["ne"])
        else:
            state["bad_evals"] += 1
        stop = state["bad_evals"] >= cfg.train.early_stopping_patience
        save_checkpoint(out_dir / "checkpoint.pt", model, opt, {**state, "step": step})
    train_metrics.reset()
    return _broadcast_flag(stop, d)



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train DynInt on ebf_examples (DDP under torchrun)")
    p.add_argument("--config", default=str(ROOT / "conf" / "local.yaml"))
    p.add_argument("--table", help="ebf_examples path (default: <lake_root>/ebf_examples)")
    p.add_argument("--version", type=int, help="Delta version to pin (default: each day at the version of the last "
                   "run that published it, from the run ledger)")
    p.add_argument("--out", help="run folder (default: <train.out_dir>/<variant>-<policy>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--log-every", type=int, default=LOG_EVERY,
                   help=f"train loss/NE/samples/s to TensorBoard every N steps (default {LOG_EVERY})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.policy=remove_passive (repeatable; the jobs' "
                        "convention)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="bare overrides, the old form: still read, same as --set")
    args = p.parse_args(argv)
    if args.overrides:
        print("train.py: bare KEY=VALUE overrides are the old form; use --set KEY=VALUE (as the jobs do)",
              file=sys.stderr)
    try:
        cfg = load_config(args.config, [*args.sets, *args.overrides])
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    d = setup_distributed()
    table = args.table or str(Path(cfg.paths.lake_root) / "ebf_examples")
    out = Path(args.out or Path(cfg.train.out_dir) / f"{cfg.model.variant}-{cfg.train.policy}")
    try:
        report = train(cfg, str(Path(table).resolve()), out, d, args.version, args.resume, args.log_every)
        if d.is_main:
            print(summary_text(report))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["train", "evaluate", "split_days", "setup_distributed", "Dist"]
