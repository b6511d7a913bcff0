"""Feature importance of the ad EBF attributes: permutation of one attribute's sequence at a time on the
evaluation day, the NE change per attribute, overall and per segment (issue 20).

    .venv-train/bin/python -m training.importance --run RUN_DIR [--seed 1] [--max-batches 0] [--keep 4]

``RUN_DIR`` is a finished training run (``training/train.py``): its ``report.json`` gives the configuration,
the table, the pinned Delta version and the evaluation days, and ``best.pt`` the model that the report
describes. The run must be of a policy whose passive and active segments both read every ad attribute
(``baseline`` or ``boost_*``), so that every attribute can be permuted.

For each ad attribute ``a``, every evaluation batch is scored twice: as read, and with the rows of
``ad_seq_<a>`` permuted within the batch (a fixed permutation per batch and attribute, seeded), so that the
attribute's link to the label and to the other fields is broken while its distribution is kept. The
importance of ``a`` is NE(permuted) - NE(as read) (eq. 10): near 0 for an attribute the model does not use,
positive for one it needs. The ranking (ascending: least important first) is written to
``<run>/feature_importance.json`` with each change's standard error (``se_delta_ne``: the per-batch changes of the
summed log loss as clusters, over the entropy of the base rate), and the lowest ``--keep`` are printed as the
override to put in a profile:
``--set ebf.low_importance_attributes=[...]`` (the paper removes the 4 attributes of lowest importance).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dynamix_spark.config import Config, load_config  # noqa: E402
from schemas.ebf import EBF_SOURCES, seq_col  # noqa: E402
from training.batch import Batch  # noqa: E402
from training.delta_snapshot import days_snapshot  # noqa: E402
from training.loader import EbfLoader  # noqa: E402
from training.metrics import BinaryMetrics, binary_entropy, log_loss  # noqa: E402
from training.model import DynIntModel  # noqa: E402
from training.run_report import report_day_versions  # noqa: E402

AD_ATTRIBUTES: tuple[str, ...] = EBF_SOURCES["ad"]


def _permuted(b: Batch, column: str, rng: np.random.Generator) -> Batch:
    """``b`` with the rows of sequence column ``column`` permuted (the source's lengths move with them, so a
    permuted row keeps its own padding)."""
    perm = torch.from_numpy(rng.permutation(len(b)))
    seqs = dict(b.seqs)
    seqs[column] = b.seqs[column][perm]
    return Batch(targets=b.targets, seqs=seqs, lengths=b.lengths, label=b.label, policy=b.policy,
                 segment=b.segment, meta=b.meta)


def _permuted_lengths(b: Batch, column: str, rng: np.random.Generator) -> Batch:
    """As :func:`_permuted`, cut to the row's own length: the model pools every sequence field of a source with
    the source's lengths, so the permuted ids beyond the receiving row's length become padding (0), and a
    shorter donor row's padding stays padding."""
    out = _permuted(b, column, rng)
    ids = out.seqs[column]
    src = column.split("_seq_", 1)[0]
    n = ids.shape[1]
    valid = torch.arange(n)[None, :] < b.lengths[src][:, None]
    out.seqs[column] = torch.where(valid, ids, torch.zeros_like(ids))
    return out


def permutation_importance(model: torch.nn.Module, batches: Callable[[], Iterable[Batch]],
                           attributes: Iterable[str] = AD_ATTRIBUTES, seed: int = 1) -> dict:
    """NE as read and with each ad attribute's sequence permuted; ``batches()`` yields the same evaluation
    batches each time it is called. Returns ``{"base": {...}, "attributes": {a: {...}}, "ranking": [...]}``
    with NE overall and per segment and ``delta_ne`` = NE(permuted) - NE(base)."""
    attributes = tuple(attributes)
    model.eval()
    base, base_seg = BinaryMetrics(), {}
    perm = {a: (BinaryMetrics(), {}) for a in attributes}
    # per batch: its rows, and per attribute the summed log loss permuted minus as read (the standard error)
    rows: list[int] = []
    diffs: dict[str, list[float]] = {a: [] for a in attributes}
    with torch.no_grad():
        for i, b in enumerate(batches()):
            y = b.label.float()
            p = torch.sigmoid(model(b).float())
            base.update(y, p)
            rows.append(len(y))
            base_ll = log_loss(y, p) * len(y)
            base_seg.setdefault(b.segment, BinaryMetrics()).update(y, p)
            for k, a in enumerate(attributes):
                col = seq_col("ad", a)
                if col not in b.seqs:
                    raise ValueError(f"batch of policy {b.policy!r}, segment {b.segment} has no {col}: run the "
                                     "importance on a policy that reads every ad attribute (baseline)")
                rng = np.random.default_rng([seed, i, k])
                pp = torch.sigmoid(model(_permuted_lengths(b, col, rng)).float())
                diffs[a].append(log_loss(y, pp) * len(y) - base_ll)
                overall, seg = perm[a]
                overall.update(y, pp)
                seg.setdefault(b.segment, BinaryMetrics()).update(y, pp)

    def ne(m: BinaryMetrics) -> float:
        return float(m.compute()["ne"])

    out = {"base": {"ne": ne(base), "per_segment": {str(s): ne(m) for s, m in sorted(base_seg.items())},
                    "rows": base.n},
           "attributes": {}}
    entropy = binary_entropy(float(base.compute()["base_rate"])) if base.n else float("nan")
    for a, (overall, seg) in perm.items():
        per = {str(s): ne(m) for s, m in sorted(seg.items())}
        out["attributes"][a] = {
            "ne": ne(overall), "delta_ne": ne(overall) - out["base"]["ne"],
            "se_delta_ne": clustered_se(diffs[a], rows) / entropy if entropy > 0 else float("nan"),
            "per_segment": per,
            "delta_ne_per_segment": {s: v - out["base"]["per_segment"][s] for s, v in per.items()}}
    out["ranking"] = sorted(attributes, key=lambda a: out["attributes"][a]["delta_ne"])
    return out


def clustered_se(diffs: Sequence[float], rows: Sequence[int]) -> float:
    """Standard error of sum(diffs) / sum(rows), the mean per-row change, with batches as clusters: each batch's
    rows share its permutation, so they are not independent. nan with fewer than 2 batches."""
    d, n = np.asarray(diffs, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    k = len(d)
    if k < 2:
        return float("nan")
    mean = d.sum() / n.sum()
    return float(np.sqrt(k / (k - 1) * ((d - n * mean) ** 2).sum()) / n.sum())


def _run_config(run: Path) -> tuple[Config, dict]:
    rep = json.loads((run / "report.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:  # the run's configuration, as a profile load_config validates
        profile = Path(tmp) / "run.yaml"
        profile.write_text(yaml.safe_dump(rep["config"]))
        return load_config(profile), rep


def reported_run(run: Path) -> tuple[Config, dict, DynIntModel, dict, EbfLoader]:
    """A finished run's configuration, report, reported model (``best.pt``, else ``checkpoint.pt``) with its
    checkpoint state, and a loader of its evaluation rows in order (each day at the version the run read it at)."""
    cfg, rep = _run_config(run)
    model = DynIntModel(cfg.model)
    best = run / "best.pt"
    state = torch.load(best if best.exists() else run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    versions = report_day_versions(rep)
    snap = days_snapshot(rep["table"], {ds: versions[ds] for ds in rep["eval_days"]})
    loader = EbfLoader.from_config(rep["table"], None, cfg, rep["eval_days"], shuffle_buffer=0, shuffle=False,
                                   drop_last=False, snapshot=snap)
    return cfg, rep, model, state, loader


def run_importance(run: Path, seed: int = 1, max_batches: int = 0) -> dict:
    """:func:`permutation_importance` of a finished run's reported model (``best.pt``, else ``checkpoint.pt``)
    on its evaluation day(s), written to ``<run>/feature_importance.json`` and returned."""
    cfg, rep, model, state, loader = reported_run(run)

    def batches() -> Iterator[Batch]:
        it = loader.iter_epoch(0)
        with contextlib.closing(it):
            yield from (itertools.islice(it, max_batches) if max_batches else it)

    res = permutation_importance(model, batches, seed=seed)
    res.update(run=str(run), policy=cfg.train.policy, variant=cfg.model.variant, eval_days=rep["eval_days"],
               model_step=state.get("step"), seed=seed, max_batches=max_batches)
    (run / "feature_importance.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Permutation importance of the ad EBF attributes for a finished run")
    p.add_argument("--run", required=True, help="run folder of training/train.py (report.json, best.pt)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-batches", type=int, default=0, help="evaluation batches to score (0: the whole day)")
    p.add_argument("--keep", type=int, default=4, help="how many of the lowest to print as the removal list")
    args = p.parse_args(argv)
    res = run_importance(Path(args.run), args.seed, args.max_batches)
    for a in res["ranking"]:
        r = res["attributes"][a]
        segs = " ".join(f"seg{s} {v:+.5f}" for s, v in r["delta_ne_per_segment"].items())
        print(f"{a:16s} delta NE {r['delta_ne']:+.5f} (se {r['se_delta_ne']:.5f})  ({segs})")
    low = res["ranking"][:args.keep]
    print(f"--set ebf.low_importance_attributes=[{', '.join(low)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
