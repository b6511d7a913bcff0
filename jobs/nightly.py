"""The nightly run: denoise -> user_window_stats -> build_ebf -> maintenance for one ``ds`` or a backfill range.

    spark-submit jobs/nightly.py --config conf/local.yaml --ds 2026-11-02 [--until 2026-11-05]

Re-running a date replaces that date's partitions and nothing else. For a range, every day is denoised
before any day's statistics are computed, so each day's labels see the next day's conversions, and every
day's segments exist before any day's examples are built (an example early on ds uses the segment of the
last window of ds - 1). Maintenance comes last, once for the whole range: OPTIMIZE the range's partitions,
VACUUM, one run_metrics row per table, and registration of every table in the catalog database
(``paths.database``), so ``SELECT ... FROM dynamix.user_window_stats`` works after the run.

Before any job starts, every day's raw partitions of the required sources (``paths.required_sources``) must
exist, and every partition folder that exists must carry the landing job's completeness marker
(``paths.raw_ready_marker``): a missing or incomplete day fails the whole run with no table written. An
optional source without a partition for a day is absent: that day runs with length-0 sequences for it. Any
failure appends a ``status = 'failed'`` row per day to run_metrics (the step and the error) and exits 1.
"""
from __future__ import annotations

import datetime as dt
import json
import sys

from dynamix_spark.cli import _date, job_days, job_parser, parse_job_args
from dynamix_spark.config import Config
from dynamix_spark.delta_io import RunMetrics, append_run_metrics, new_run_id
from dynamix_spark.quality import QualityGateError
from dynamix_spark.raw_io import RawInputError, check_day_ready
from dynamix_spark.session import build_spark
from jobs import build_ebf, denoise, maintenance, user_window_stats
from jobs.steps import STEPS

JOB = "nightly"


def check_inputs(spark, cfg: Config, days: list[str]) -> dict[str, tuple[str, ...]]:
    """Every required source's raw partition of every day exists, and every partition that exists carries the
    completeness marker, or RawInputError (``raw_io.check_day_ready``); the sources present on each day.

    Checked for the whole range before the first job starts, so a missing or incomplete day fails the run
    with nothing written (a backfill does not publish its first days and then stop half-way).
    """
    p = cfg.paths
    return {ds: check_day_ready(spark, p.raw_root, ds, p.raw_ready_marker, p.required_sources) for ds in days}


def record_failure(spark, cfg: Config, days: list[str], step: str, error: BaseException) -> None:
    """One ``status = 'failed'`` run_metrics row per day of the run, naming the step and the error."""
    now = dt.datetime.now(dt.timezone.utc)
    run_id = new_run_id(JOB, days[0])
    append_run_metrics(spark, cfg.paths.lake_root, [
        RunMetrics(run_id=run_id, job=JOB, ds=ds, status="failed", ended_at=now,
                   params={"step": step, "error": f"{type(error).__name__}: {str(error)[:2000]}", "days": days})
        for ds in days])


def run(spark, cfg: Config, days: list[str]) -> dict:
    step = "check_inputs"
    try:
        check_inputs(spark, cfg, days)
        report: dict = {}
        for step in STEPS:
            if step == "maintenance":  # once for the whole range
                report[step] = maintenance.run(spark, cfg, days)
                continue
            report[step] = {}
            for ds in days:
                report[step][ds] = DAILY_STEPS[step](spark, cfg, ds)
        return report
    except Exception as e:
        record_failure(spark, cfg, days, step, e)
        raise


def _denoise(spark, cfg: Config, ds: str) -> dict:
    outcomes = denoise.run(spark, cfg, ds)
    return {src: {"rows_in": o.rows_in, "clean": o.clean, "quarantined": o.quarantined,
                  "drops": o.by_kind("drop")} for src, o in outcomes.items()}


# The job of each step that runs per day (jobs/steps.py: every step but maintenance).
DAILY_STEPS = {"denoise": _denoise, "user_window_stats": user_window_stats.run, "build_ebf": build_ebf.run}
assert [*DAILY_STEPS, "maintenance"] == list(STEPS), "jobs/steps.py and the nightly's jobs disagree"


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Run the nightly DynamiX pipeline for a day or a backfill range")
    parser.add_argument("--until", type=_date, help="last date of a backfill range (inclusive)")
    parser.add_argument("--report", help="also write the JSON report to this file (stdout is shared with the "
                                         "JVM, whose VACUUM prints lines of its own)")
    args, cfg = parse_job_args(parser, argv)
    days = job_days(args)
    spark = build_spark(f"{cfg.spark.app_name}-nightly", cfg.spark.conf)
    try:
        report = run(spark, cfg, days)
    except (RawInputError, QualityGateError) as e:  # expected failures: one clear line, no stack trace
        print(f"nightly {days[0]}..{days[-1]} failed: {e}", file=sys.stderr)
        return 1
    text = json.dumps(report, default=str, indent=1)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
