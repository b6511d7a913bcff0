"""The nightly run: denoise -> user_window_stats -> build_ebf -> maintenance for one ``ds`` or a backfill range.

    spark-submit jobs/nightly.py --config conf/local.yaml --ds 2026-11-02 [--until 2026-11-05]

Re-running a date replaces that date's partitions and nothing else. For a range, every day is denoised
before any day's statistics are computed, so each day's labels see the next day's conversions, and every
day's segments exist before any day's examples are built (an example early on ds uses the segment of the
last window of ds - 1). Maintenance comes last, once for the whole range: OPTIMIZE the range's partitions,
VACUUM, one run_metrics row per table, and registration of every table in the catalog database
(``paths.database``), so ``SELECT ... FROM dynamix.user_window_stats`` works after the run.
"""
from __future__ import annotations

import datetime as dt
import json
import sys

from dynamix_spark.cli import _date, job_parser, parse_job_args
from dynamix_spark.config import Config
from dynamix_spark.session import build_spark
from jobs import build_ebf, denoise, maintenance, user_window_stats


def date_range(start: str, until: str | None) -> list[str]:
    a = dt.date.fromisoformat(start)
    b = dt.date.fromisoformat(until) if until else a
    if b < a:
        raise SystemExit(f"--until {until} is before --ds {start}")
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def run(spark, cfg: Config, days: list[str]) -> dict:
    report: dict = {"denoise": {}, "user_window_stats": {}, "build_ebf": {}}
    for ds in days:
        outcomes = denoise.run(spark, cfg, ds)
        report["denoise"][ds] = {src: {"rows_in": o.rows_in, "clean": o.clean, "quarantined": o.quarantined,
                                       "drops": o.by_kind("drop")} for src, o in outcomes.items()}
    for ds in days:
        report["user_window_stats"][ds] = user_window_stats.run(spark, cfg, ds)
    for ds in days:
        report["build_ebf"][ds] = build_ebf.run(spark, cfg, ds)
    report["maintenance"] = maintenance.run(spark, cfg, days)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Run the nightly DynamiX pipeline for a day or a backfill range")
    parser.add_argument("--until", type=_date, help="last date of a backfill range (inclusive)")
    args, cfg = parse_job_args(parser, argv)
    days = date_range(args.ds, args.until)
    spark = build_spark(f"{cfg.spark.app_name}-nightly", cfg.spark.conf)
    print(json.dumps(run(spark, cfg, days), default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
