"""Table maintenance for one ``ds`` (or a range), then catalog registration: the last step of a night.

    spark-submit jobs/maintenance.py --config conf/local.yaml --ds 2026-11-02 [--until 2026-11-03]

OPTIMIZE the run's ``ds`` partitions of every Delta table in the lake (Z-ordered by ``user_id`` for the
tables read per user), VACUUM each table with ``maintenance.vacuum_retention_hours`` (the reasoning is in
``dynamix_spark/maintenance.py`` and docs/OPERATIONS.md), append one ``run_metrics`` row per table
(``source`` = the table) and register every table in the catalog database ``paths.database``.
"""
from __future__ import annotations

import datetime as dt
import json
import sys

from dynamix_spark.catalog import register_tables
from dynamix_spark.cli import _date, job_days, job_parser, parse_job_args
from dynamix_spark.config import Config, config_to_dict
from dynamix_spark.delta_io import RunMetrics, append_run_metrics, new_run_id
from dynamix_spark.maintenance import maintain_lake
from dynamix_spark.session import build_spark

JOB = "maintenance"


def run(spark, cfg: Config, days: list[str]) -> dict:
    ds = max(days)
    run_id = new_run_id(JOB, ds)
    started = dt.datetime.now(dt.timezone.utc)
    done = maintain_lake(spark, cfg.paths.lake_root, days, cfg.maintenance)
    ended = dt.datetime.now(dt.timezone.utc)
    params = {"days": sorted(days), "maintenance": config_to_dict(cfg.maintenance)}
    metrics = [RunMetrics(run_id=run_id, job=JOB, ds=ds, source=t.table, started_at=started, ended_at=ended,
                          status="succeeded", delta_versions={t.table: t.version}, params={**params, **t.as_dict()})
               for t in done]
    if metrics:
        append_run_metrics(spark, cfg.paths.lake_root, metrics)
    report: dict = {"run_id": run_id, "tables": {t.table: t.as_dict() for t in done}}
    if cfg.maintenance.register_catalog:
        # After the run_metrics append, so that a first night registers run_metrics too.
        report["catalog"] = register_tables(spark, cfg.paths.lake_root, cfg.paths.database).as_dict()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("OPTIMIZE / VACUUM the lake's Delta tables and register them in the catalog")
    parser.add_argument("--until", type=_date, help="last date of a range (inclusive): optimize every day in it")
    args, cfg = parse_job_args(parser, argv)
    days = job_days(args)
    spark = build_spark(f"{cfg.spark.app_name}-{JOB}", cfg.spark.conf)
    print(json.dumps(run(spark, cfg, days), default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
