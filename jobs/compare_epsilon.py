"""The epsilon of two segmentation modes side by side for one ``ds``: the configured one (the paper's 2/3
target fraction by default) and ``auto`` (DynamiX: epsilon "to maximize the NE gains between two user-segments").

    spark-submit jobs/compare_epsilon.py --config conf/local.yaml --ds 2026-11-03 [--out FILE.json]

Read-only: the day's windows are computed from the clean tables exactly as ``jobs/user_window_stats.py`` does
(eqs. 1, 6-8), and for each mode the chosen epsilon, the share of windows it makes active and the NE gap
between the segments it gives are reported. The gap is the criterion of ``auto``: the per-user Bayes predictor
(eq. 6) fitted on a window and scored on the user's next window, NE(passive) - NE(active) (eq. 10); positive
when the active segment's dwell history predicts its conversions better. Nothing is written to the lake; the
JSON goes to ``--out`` (and stdout).
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from pyspark import StorageLevel

from dynamix_spark.cli import job_parser, parse_job_args
from dynamix_spark.segmentation import choose_epsilon, describe_gap, segment_ne_gaps
from dynamix_spark.session import build_spark
from dynamix_spark.window_stats import label_impressions, window_stats
from jobs.user_window_stats import read_inputs

JOB = "compare_epsilon"


def run(spark, cfg, ds: str, modes: tuple[str, ...] = ("configured", "auto")) -> dict:
    imps, conv, conv_days = read_inputs(spark, cfg, ds)
    if ds not in conv_days:
        raise RuntimeError(f"clean_conversions has no partition ds={ds}: run denoise for {ds} first")
    labelled = label_impressions(imps, conv, cfg.stats).persist(StorageLevel.MEMORY_AND_DISK)
    stats = window_stats(labelled, cfg.stats).persist(StorageLevel.MEMORY_AND_DISK)
    choices = {}
    for mode in modes:
        seg_cfg = cfg.segmentation if mode == "configured" else replace(cfg.segmentation, epsilon_mode=mode)
        choices[mode] = choose_epsilon(stats, labelled, seg_cfg, cfg.stats.window_length_s)
    gaps = segment_ne_gaps(stats, labelled, sorted({c.epsilon for c in choices.values()}), cfg.stats.window_length_s)
    out = {"ds": ds, "modes": {}}
    for mode, c in choices.items():
        g = describe_gap(gaps[float(c.epsilon)])
        scored = g["windows_passive"] + g["windows_active"]
        out["modes"][mode] = {"epsilon_mode": c.mode, "epsilon": c.epsilon,
                              "active_share_scored": g["windows_active"] / scored if scored else None, **g}
    labelled.unpersist()
    stats.unpersist()
    return out


def main(argv: list[str] | None = None) -> int:
    p = job_parser("Epsilon of the configured segmentation mode beside auto, with the NE gap each gives")
    p.add_argument("--out", help="write the JSON here too")
    args, cfg = parse_job_args(p, argv)
    spark = build_spark(f"{cfg.spark.app_name}-{JOB}", cfg.spark.conf)
    res = run(spark, cfg, args.ds)
    text = json.dumps(res, indent=1, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
