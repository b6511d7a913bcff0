"""raw -> clean: contract checks, quarantine, dedupe and dwell-time denoising for one ``ds``.

    spark-submit jobs/denoise.py --config conf/local.yaml --ds 2026-11-02

Writes ``clean_<source>`` (4 tables) and ``quarantine`` for the day (replaceWhere on ``ds``) and one
``run_metrics`` row per source with the counts by reason.

A required source (``paths.required_sources``) without its partition fails the day before anything is read.
An optional source without a partition folder for the day is absent and reads as no rows, like a partition of
0-row files: no clean rows and no quarantine rows for it, the warnings ``source_present`` (absent only) and
``row_count_positive`` in ``quality_results``, ``source_state`` (``absent`` / ``empty``) and ``source_warning``
in its ``run_metrics`` row's params. Its ``clean_<source>`` partition of the day is replaced by no rows, except
that an absent source whose table was never created gets none (a deployment without the source has no table).
"""
from __future__ import annotations

import datetime as dt
import json
import sys

from pyspark import StorageLevel

from dynamix_spark.cli import job_parser, parse_job_args
from dynamix_spark.config import Config, config_to_dict
from dynamix_spark.delta_io import (RunMetrics, append_run_metrics, conform, is_delta, new_run_id,
                                    overwrite_partition, table_path)
from dynamix_spark.quality import Reconciliation, gate, publish_or_fail, record_results, source_present_check
from dynamix_spark.denoise import classify, clean_rows, quarantine_rows, Outcome
from dynamix_spark.raw_io import check_day_ready, empty_raw_partition, partition_path, read_raw_partition
from dynamix_spark.session import build_spark
from schemas import CLEAN_TABLES, QUARANTINE, RAW_SOURCES, clean_table_name
from schemas.expectations import raw_table_name

JOB = "denoise"


def run(spark, cfg: Config, ds: str) -> dict[str, Outcome]:
    run_id = new_run_id(JOB, ds)
    paths = cfg.paths
    params = {"ds": ds, "denoise": config_to_dict(cfg.denoise), "raw_root": paths.raw_root,
              "required_sources": list(paths.required_sources)}
    # Extract every source first: a missing required partition or a broken file fails before anything is
    # written; an optional source without a partition for the day is absent and reads as no rows.
    present = check_day_ready(spark, paths.raw_root, ds, paths.raw_ready_marker, paths.required_sources)
    raw = {src: read_raw_partition(spark, paths.raw_root, src, ds, paths.raw_ready_marker) if src in present
           else empty_raw_partition(spark, src) for src in RAW_SOURCES}
    states: dict[str, str] = {}
    outcomes: dict[str, Outcome] = {}
    metrics: list[RunMetrics] = []
    quarantined = []
    persisted = []
    staged_clean = {}
    results = []
    lake = cfg.paths.lake_root
    for src in RAW_SOURCES:
        m = RunMetrics(run_id=run_id, job=JOB, ds=ds, source=src, params=params)
        classified = classify(raw[src], src, ds, cfg.denoise).persist(StorageLevel.MEMORY_AND_DISK)
        persisted.append(classified)
        counts = {r["_status"]: r["count"] for r in classified.groupBy("_status").count().collect()}
        outcome = Outcome(counts)
        states[src] = "absent" if src not in present else "empty" if outcome.rows_in == 0 else "present"
        table = clean_table_name(src)
        clean = conform(clean_rows(classified, src, ds), CLEAN_TABLES[table]).persist(StorageLevel.MEMORY_AND_DISK)
        persisted.append(clean)
        staged_clean[src] = clean
        q_src = quarantine_rows(classified, src, ds, run_id)
        quarantined.append(q_src)
        # Audit before anything is published: the raw partition as read, and the staged clean rows with the
        # reconciliation raw = clean + quarantined + counted drops.
        presence = source_present_check(src, partition_path(paths.raw_root, src, ds), src in present,
                                        src in paths.required_sources)
        results.append(gate(spark, raw[src], raw_table_name(src), ds, cfg, job=JOB, run_id=run_id, record=False,
                            extra_checks=[presence]))
        results.append(gate(spark, clean, table, ds, cfg, job=JOB, run_id=run_id, record=False,
                            reconciliation=Reconciliation(raw=raw[src], quarantined=q_src,
                                                          drops=outcome.by_kind("drop"))))
        m.rows_in, m.rows_out, m.rows_quarantined = outcome.rows_in, outcome.clean, outcome.quarantined
        m.drops, m.quarantined = outcome.by_kind("drop"), outcome.by_kind("q")
        outcomes[src] = outcome
        metrics.append(m)
    q = quarantined[0]
    for part in quarantined[1:]:
        q = q.unionByName(part)
    q = conform(q, QUARANTINE).persist(StorageLevel.MEMORY_AND_DISK)
    persisted.append(q)
    results.append(gate(spark, q, "quarantine", ds, cfg, job=JOB, run_id=run_id, record=False))
    record_results(spark, lake, results)
    info = {"job": JOB, "run_id": run_id, **params}

    def publish() -> dict[str, int]:
        versions = {}
        for src, clean in staged_clean.items():
            table = clean_table_name(src)
            if states[src] == "absent" and not is_delta(spark, table_path(lake, table)):
                continue  # a source this deployment never had: no table for it
            versions[table] = overwrite_partition(clean, table_path(lake, table), ds, CLEAN_TABLES[table], info)
        versions["quarantine"] = overwrite_partition(q, table_path(lake, "quarantine"), ds, QUARANTINE, info)
        return versions

    versions = publish_or_fail(results, publish)  # all tables or none: a failed critical check raises here
    now = dt.datetime.now(dt.timezone.utc)
    warnings = [c.expectation for r in results for c in r.warnings]
    for m in metrics:
        table = clean_table_name(m.source)
        m.delta_versions = {t: versions[t] for t in (table, "quarantine") if t in versions}
        m.params = {**params, "quality_warnings": warnings, "source_state": states[m.source]}
        if states[m.source] != "present":
            m.params["source_warning"] = (
                f"{m.source} {states[m.source]} for ds={ds}: "
                + ("no raw partition folder" if states[m.source] == "absent" else "0 rows in its raw partition")
                + "; optional source (paths.required_sources): length-0 sequences")
        m.status, m.ended_at = "succeeded", now
    append_run_metrics(spark, lake, metrics)
    for df in persisted:
        df.unpersist()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_job_args(job_parser("Denoise raw logs into clean Delta tables"), argv)
    spark = build_spark(f"{cfg.spark.app_name}-{JOB}", cfg.spark.conf)
    outcomes = run(spark, cfg, args.ds)
    print(json.dumps({src: o.counts for src, o in outcomes.items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
