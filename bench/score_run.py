"""A finished training run's predictions on its evaluation day(s), one row per example, for offline analysis.

    .venv-train/bin/python bench/score_run.py --run RUN_DIR --out PRED.npz

Loads the run's reported model (``best.pt``, else ``checkpoint.pt``) and its configuration from ``report.json``
(``training.importance.reported_run``) and scores every evaluation row in the loader's order; writes ``user_id``,
``event_ts_us``, ``label``, ``segment`` and ``p`` (the predicted probability). ``bench/planted_ceiling.py
--predictions`` joins them with the counted matches.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from training.importance import reported_run

    _cfg, _rep, model, _state, loader = reported_run(args.run)
    model.eval()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("user_id", "event_ts_us", "label", "segment", "p")}
    it = loader.iter_epoch(0)
    with contextlib.closing(it), torch.no_grad():
        for b in it:
            cols["p"].append(torch.sigmoid(model(b)).float().numpy())
            cols["label"].append(b.label.numpy())
            cols["segment"].append(np.full(len(b), b.segment))
            cols["user_id"].append(b.meta["user_id"].numpy())
            cols["event_ts_us"].append(b.meta["event_ts_us"].numpy())
    np.savez(args.out, **{k: np.concatenate(v) for k, v in cols.items()})
    print(f"{sum(len(v) for v in cols['p']):,} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
