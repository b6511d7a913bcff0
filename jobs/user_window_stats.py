"""clean -> ``user_window_stats`` and ``user_segments`` for one ``ds`` (DynamiX eqs. 1, 6-9).

    spark-submit jobs/user_window_stats.py --config conf/local.yaml --ds 2026-11-02

Windows are by event time: the day's windows take the clean ad impressions whose ``event_ts`` falls on
``ds`` (also from the neighbouring partitions, where late or early logging put some), and conversions from
``ds - 1`` to ``ds + 1`` so that labels near midnight see conversions across the day boundary. Whether
the next day's conversions were there is recorded in the run metrics (``params.conversion_days``). Each day of
the clean tables is read as the last run that published it left it (``dynamix_spark.ledger``).
"""
from __future__ import annotations

import json
import sys

from pyspark.sql import functions as F

from dynamix_spark.cli import job_parser, parse_job_args
from dynamix_spark.config import Config, config_to_dict
from dynamix_spark.delta_io import RunMetrics, new_run_id, table_path
from dynamix_spark.ledger import read_published
from dynamix_spark.segmentation import choose_epsilon, segment
from dynamix_spark.window_stats import label_impressions, window_stats
from dynamix_spark.session import build_spark
from dynamix_spark.staged_write import StagedWrite
from schemas import USER_SEGMENTS, USER_WINDOW_STATS
from schemas.dates import neighbour_days
from schemas.names import USER_SEGMENTS_TABLE, USER_WINDOW_STATS_TABLE, clean_table_name

JOB = "user_window_stats"


def read_inputs(spark, cfg: Config, ds: str):
    days = neighbour_days(ds)
    lake = cfg.paths.lake_root
    # Each day as its last published run left it (the run ledger), never half of a run.
    imps = (read_published(spark, lake, clean_table_name("ad_impressions"), days)
            .where(F.to_date("event_ts") == F.lit(ds).cast("date"))
            .select("user_id", "event_ts", "dwell_ms"))
    conv_all = read_published(spark, lake, clean_table_name("conversions"), days)
    present = sorted(r[0] for r in conv_all.where(F.col("ds").isin(days)).select("ds").distinct().collect())
    conv = conv_all.where(F.col("ds").isin(days)).select("user_id", "event_ts")
    return imps, conv, present


def summarise(spark, lake: str, version: int, ds: str) -> dict:
    """The day's figures from the published ``user_window_stats`` at ``version`` (what was committed)."""
    written = spark.read.format("delta").option("versionAsOf", version).load(table_path(lake, USER_WINDOW_STATS_TABLE)) \
        .where(F.col("ds") == ds)
    return written.agg(F.count("*").alias("windows"), F.sum("n_pos").alias("n_pos"), F.sum("n_neg").alias("n_neg"),
                       F.avg("segment").alias("active_share"), F.count("corr").alias("with_corr"),
                       F.avg(F.when(F.col("corr").isNotNull(), F.col("segment"))).alias("active_share_with_corr"),
                       ).first().asDict()


def run(spark, cfg: Config, ds: str) -> dict:
    run_id = new_run_id(JOB, ds)
    m = RunMetrics(run_id=run_id, job=JOB, ds=ds)
    imps, conv, conv_days = read_inputs(spark, cfg, ds)
    if ds not in conv_days:
        # A day with impressions but no conversion partition would label everything negative.
        raise RuntimeError(f"clean_conversions has no partition ds={ds}: run denoise for {ds} first")
    with StagedWrite(spark, cfg, job=JOB, run_id=run_id, ds=ds, checkpoint=True) as stage:
        labelled = stage.cache(label_impressions(imps, conv, cfg.stats))
        stats = stage.cache(window_stats(labelled, cfg.stats))
        choice = choose_epsilon(stats, labelled, cfg.segmentation, cfg.stats.window_length_s)
        out = segment(stats, choice, cfg.segmentation.null_corr_segment).withColumn("ds", F.lit(ds))
        params = {"ds": ds, "stats": config_to_dict(cfg.stats), "segmentation": config_to_dict(cfg.segmentation),
                  "conversion_days": conv_days, "epsilon": choice.epsilon, "epsilon_mode": choice.mode,
                  "thresholds": list(choice.thresholds), "epsilon_detail": choice.detail}
        # Write, audit, publish: validate exactly what would be written; a failed critical expectation raises
        # QualityGateError before any commit, so the published tables keep their previous version.
        staged = stage.add(USER_WINDOW_STATS_TABLE, out, USER_WINDOW_STATS)
        stage.add(USER_SEGMENTS_TABLE, staged, USER_SEGMENTS, persist=False)  # a projection of the persisted rows
        m.delta_versions = stage.commit({"job": JOB, "run_id": run_id, **params})
        summary = summarise(spark, cfg.paths.lake_root, m.delta_versions[USER_WINDOW_STATS_TABLE], ds)
        m.rows_in = int((summary["n_pos"] or 0) + (summary["n_neg"] or 0))
        m.rows_out = int(summary["windows"])
        m.epsilon, m.epsilon_mode, m.params = choice.epsilon, choice.mode, params
        stage.record_run([m])
    return {"epsilon": choice.epsilon, "epsilon_mode": choice.mode, **summary}


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_job_args(job_parser("Windowed Corr statistics and segments per user and window"), argv)
    spark = build_spark(f"{cfg.spark.app_name}-{JOB}", cfg.spark.conf)
    print(json.dumps(run(spark, cfg, args.ds), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
