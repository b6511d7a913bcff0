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

import functools
import json
import sys

from pyspark.sql import DataFrame

from dynamix_spark.cli import job_parser, parse_job_args
from dynamix_spark.config import Config, PathsConfig, config_to_dict
from dynamix_spark.delta_io import RunMetrics, new_run_id
from dynamix_spark.denoise import classify, clean_rows, quarantine_rows, Outcome
from dynamix_spark.quality import Reconciliation, source_present_check
from dynamix_spark.raw_io import check_day_ready, empty_raw_partition, partition_path, read_raw_partition
from dynamix_spark.session import build_spark
from dynamix_spark.staged_write import StagedWrite
from schemas import CLEAN_TABLES, QUARANTINE, RAW_SOURCES
from schemas.names import QUARANTINE_TABLE, clean_table_name, raw_table_name

JOB = "denoise"


def extract(spark, paths: PathsConfig, ds: str) -> tuple[set[str], dict[str, DataFrame]]:
    """The sources present for ``ds`` and every source's raw partition. A missing required partition or a broken
    file fails here, before anything is written; an optional source without a partition is absent: no rows."""
    present = check_day_ready(spark, paths.raw_root, ds, paths.raw_ready_marker, paths.required_sources)
    return present, {src: read_raw_partition(spark, paths.raw_root, src, ds, paths.raw_ready_marker)
                     if src in present else empty_raw_partition(spark, src) for src in RAW_SOURCES}


def source_metrics(m: RunMetrics, outcome: Outcome, state: str, versions: dict[str, int]) -> RunMetrics:
    """``m`` (one source's run_metrics row) filled with the source's counts, versions and state."""
    m.rows_in, m.rows_out, m.rows_quarantined = outcome.rows_in, outcome.clean, outcome.quarantined
    m.drops, m.quarantined = outcome.by_kind("drop"), outcome.by_kind("q")
    m.delta_versions = {t: versions[t] for t in (clean_table_name(m.source), QUARANTINE_TABLE) if t in versions}
    m.params = {**m.params, "source_state": state}
    if state != "present":
        m.params["source_warning"] = (
            f"{m.source} {state} for ds={m.ds}: "
            + ("no raw partition folder" if state == "absent" else "0 rows in its raw partition")
            + "; optional source (paths.required_sources): length-0 sequences")
    return m


def gate_partitions(spark) -> int:
    """Partitions the gates scan the staged rows through: one per core. The clean rows of a source are a union of
    three branches of the classification (18 partitions on the local profile) and the quarantine a union over the
    sources (72); each of a gate's Spark jobs pays the task overhead per partition, the write keeps them."""
    return max(1, spark.sparkContext.defaultParallelism)


def run(spark, cfg: Config, ds: str) -> dict[str, Outcome]:
    run_id, paths = new_run_id(JOB, ds), cfg.paths
    params = {"ds": ds, "denoise": config_to_dict(cfg.denoise), "raw_root": paths.raw_root,
              "required_sources": list(paths.required_sources)}
    present, raw = extract(spark, paths, ds)
    metrics, outcomes, states, quarantined = [], {}, {}, []
    with StagedWrite(spark, cfg, job=JOB, run_id=run_id, ds=ds, checkpoint=True) as stage:
        for src in RAW_SOURCES:
            metrics.append(RunMetrics(run_id=run_id, job=JOB, ds=ds, source=src, params=params))
            # The raw partition is read once, into the cache: the classification and the raw gate's scans read it there.
            raw_rows = stage.cache(raw[src])
            classified = stage.cache(classify(raw_rows, src, ds, cfg.denoise))
            outcome = outcomes[src] = Outcome({r["_status"]: r["count"]
                                               for r in classified.groupBy("_status").count().collect()})
            states[src] = "absent" if src not in present else "empty" if outcome.rows_in == 0 else "present"
            quarantined.append(quarantine_rows(classified, src, ds, run_id))
            # Audit before anything is published: the raw partition as read, and the staged clean rows with the
            # reconciliation raw = clean + quarantined + counted drops: raw as the raw gate counted it, clean as the
            # clean gate counts the staged rows, quarantined and drops as the classification counted them above.
            raw_gate = stage.audit(raw_table_name(src), raw_rows, extra_checks=[source_present_check(
                src, partition_path(paths.raw_root, src, ds), src in present, src in paths.required_sources)])
            # An absent source whose clean table was never created gets none (a deployment never had it).
            stage.add(clean_table_name(src), clean_rows(classified, src, ds), CLEAN_TABLES[clean_table_name(src)],
                      create=states[src] != "absent", gate_partitions=gate_partitions(spark),
                      reconciliation=Reconciliation(raw=raw_gate.row_count if raw_gate.row_count is not None else raw_rows,
                                                    quarantined=outcome.quarantined, drops=outcome.by_kind("drop")))
        stage.add(QUARANTINE_TABLE, functools.reduce(DataFrame.unionByName, quarantined), QUARANTINE,
                  gate_partitions=gate_partitions(spark))
        versions = stage.commit({"job": JOB, "run_id": run_id, **params})  # all or none: a failed check raises
        stage.record_run([source_metrics(m, outcomes[m.source], states[m.source], versions) for m in metrics])
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_job_args(job_parser("Denoise raw logs into clean Delta tables"), argv)
    spark = build_spark(f"{cfg.spark.app_name}-{JOB}", cfg.spark.conf)
    outcomes = run(spark, cfg, args.ds)
    print(json.dumps({src: o.counts for src, o in outcomes.items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
