"""clean tables + user_segments -> ``ebf_examples`` for one ``ds`` and every policy in ``ebf.build_policies``.

    spark-submit jobs/build_ebf.py --config conf/local.yaml --ds 2026-11-02

Examples are the clean ad impressions whose ``event_ts`` falls on ``ds``. Sequences read the clean events
of the ``ebf.lookback_days`` before it; labels read conversions up to ``ds + 1`` (the label horizon may
cross midnight); segments read ``user_segments`` of the lookback. The day's partitions of the built
policies are replaced in one commit (``replaceWhere`` on ds and policy), other policies are untouched.

An optional source (``paths.required_sources``) with no clean events in the lookback, because its raw
partitions were absent or empty, gives every example a length-0 sequence for it; a clean table of an optional
source that was never created (a deployment that never had the source) reads as no rows and is named in the
run metrics (``params.missing_source_tables``).
"""
from __future__ import annotations

import json
import sys

from pyspark.sql import functions as F

from dynamix_spark.cli import job_parser, parse_job_args
from dynamix_spark.config import Config, config_to_dict
from dynamix_spark.delta_io import RunMetrics, conform, is_delta, new_run_id, table_path
from dynamix_spark.ebf import apply_policy, build_examples, source_attribute
from dynamix_spark.ledger import read_published
from dynamix_spark.segmentation import allowed_segments
from dynamix_spark.session import build_spark
from dynamix_spark.staged_write import StagedWrite
from schemas.dates import add_days, days_around
from schemas.ebf import EBF_EXAMPLES, EBF_SOURCE_TABLES, EBF_SOURCES
from schemas.names import EBF_EXAMPLES_TABLE, USER_SEGMENTS_TABLE, clean_table_name, table_source
from schemas.tables import CLEAN_TABLES

JOB = "build_ebf"


def _read(spark, lake: str, table: str, days: list[str]):
    """Each day as its last published run left it (the run ledger, ``dynamix_spark.ledger``)."""
    return read_published(spark, lake, table, days)


def _present_days(df) -> list[str]:
    return sorted(r[0] for r in df.select("ds").distinct().collect())


def read_inputs(spark, cfg: Config, ds: str) -> dict:
    lake, e = cfg.paths.lake_root, cfg.ebf
    day = F.lit(ds).cast("date")
    day_start = F.to_timestamp(F.lit(ds))
    day_end = day_start + F.expr("INTERVAL 1 DAY")
    lookback_start = F.to_timestamp(F.lit(add_days(ds, -e.lookback_days)))
    imps = _read(spark, lake, clean_table_name("ad_impressions"), days_around(ds, 1, 1))
    queries = imps.where(F.to_date("event_ts") == day)
    events, missing = {}, []
    for src, table in EBF_SOURCE_TABLES.items():
        cols = ["user_id", "event_id", "event_ts", *[a for a in EBF_SOURCES[src] if a != "event_ts"]]
        if table_source(table) not in cfg.paths.required_sources and not is_delta(spark, table_path(lake, table)):
            # denoise creates no table for an optional source that was never there: no events, length-0 sequences
            missing.append(table)
            clean = spark.createDataFrame([], CLEAN_TABLES[table])
        else:
            clean = _read(spark, lake, table, days_around(ds, e.lookback_days + 1, 1))
        events[src] = clean.where((F.col("event_ts") >= lookback_start) & (F.col("event_ts") < day_end)).select(
            *[source_attribute(clean, src, c) for c in cols])
    seg_all = _read(spark, lake, USER_SEGMENTS_TABLE, days_around(ds, e.lookback_days, 0))
    seg_days = _present_days(seg_all)
    if ds not in seg_days:
        raise RuntimeError(f"user_segments has no partition ds={ds}: run user_window_stats for {ds} first")
    segments = seg_all.where(F.col("window_end") <= day_end).select("user_id", "window_end", "segment")
    conv_all = _read(spark, lake, clean_table_name("conversions"), days_around(ds, 1, 1))
    conv_days = _present_days(conv_all)
    return {"queries": queries, "events": events, "segments": segments,
            "conversions": conv_all.select("user_id", "ad_id", "event_ts"),
            "segment_days": seg_days, "conversion_days": conv_days, "missing_source_tables": missing}


def stage_policies(examples, policies: list[str], ebf_cfg, ds: str):
    """The rows to publish for ``ds``: every policy's projection of the one build, as one union in the table's
    schema (nothing materialised: each scan recomputes the projections from ``examples``)."""
    out = None
    for p in policies:
        part = apply_policy(examples, p, ebf_cfg).withColumn("ds", F.lit(ds))
        out = part if out is None else out.unionByName(part)
    return conform(out, EBF_EXAMPLES)


def _partitions(spark) -> int:
    """The examples' partition count (one shuffle by user: ``spark.sql.shuffle.partitions``, at most)."""
    return max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))


def summarise(examples, segments: tuple[int, ...]) -> tuple[dict, dict[str, int], int]:
    """The run's figures in one Spark job over the cached examples (one shuffle by user, where three scans
    were before): examples, positives, examples per segment (``segments``: the allowed values, which the gate
    has checked) and the largest user's examples."""
    per_user = examples.groupBy("user_id").agg(
        F.count("*").alias("n"), F.sum("label").alias("pos"),
        *[F.count_if(F.col("segment") == k).alias(f"seg{k}") for k in segments])
    row = per_user.agg(F.sum("n").alias("examples"), F.sum("pos").alias("positives"), F.max("n").alias("top"),
                       *[F.sum(f"seg{k}").alias(f"seg{k}") for k in segments]).first()
    summary = {"examples": int(row["examples"] or 0), "positives": row["positives"]}
    seg_counts = {str(k): int(row[f"seg{k}"]) for k in segments if row[f"seg{k}"]}
    return summary, seg_counts, row["top"]


def run(spark, cfg: Config, ds: str) -> dict:
    run_id = new_run_id(JOB, ds)
    m = RunMetrics(run_id=run_id, job=JOB, ds=ds)
    inp = read_inputs(spark, cfg, ds)
    policies = list(cfg.ebf.build_policies)
    params = {"ds": ds, "ebf": config_to_dict(cfg.ebf), "stats": config_to_dict(cfg.stats),
              "conversion_days": inp["conversion_days"], "segment_days": inp["segment_days"],
              "missing_source_tables": inp["missing_source_tables"]}
    with StagedWrite(spark, cfg, job=JOB, run_id=run_id, ds=ds) as stage:
        examples = stage.cache(build_examples(inp["queries"], inp["events"], inp["segments"], inp["conversions"],
                                              cfg.stats, cfg.ebf, cfg.segmentation.null_corr_segment))
        n_queries = inp["queries"].count()
        # The build runs here, once, into the cache, with every core (one task per partition). Only ``examples``
        # (one copy) is cached: every policy is a projection of it (null columns), so the staged union is
        # recomputed from the cache by the gate and the write, never materialised once per policy. The gate scans
        # the union through as many tasks as the cache has partitions (the union has one set per policy).
        examples.count()
        # Write, audit, publish: one example per clean ad impression and policy, checked before the commit.
        stage.add(EBF_EXAMPLES_TABLE, stage_policies(examples, policies, cfg.ebf, ds), EBF_EXAMPLES, persist=False,
                  gate_partitions=_partitions(spark), expected_rows=n_queries * len(policies),
                  partition_by=("ds", "policy", "segment"),
                  extra_predicate="policy IN ({})".format(", ".join(f"'{p}'" for p in policies)))
        m.delta_versions = stage.commit({"job": JOB, "run_id": run_id, **params})
        summary, seg_counts, top_user = summarise(examples, allowed_segments(cfg.segmentation))
        m.rows_in, m.rows_out = n_queries, int(summary["examples"]) * len(policies)
        m.params = {**params, "segments": seg_counts, "positives": summary["positives"],
                    "max_examples_per_user": top_user, "policies": policies}
        stage.record_run([m])
    return {"examples": summary["examples"], "positives": summary["positives"], "segments": seg_counts,
            "policies": policies, "delta_version": m.delta_versions[EBF_EXAMPLES_TABLE], "max_examples_per_user": top_user}


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_job_args(job_parser("Build segmented EBF training examples (ebf_examples)"), argv)
    spark = build_spark(f"{cfg.spark.app_name}-{JOB}", cfg.spark.conf)
    print(json.dumps(run(spark, cfg, args.ds), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
