"""Generate the raw logs (four sources in the contract) and the planted truth for a date range.

    spark-submit jobs/generate_logs.py --config conf/local.yaml [--ds START] [--set generator.days=3]
"""
from __future__ import annotations

import json
import sys

from dynamix_spark.cli import job_parser, parse_job_args
from dynamix_spark.config import load_config
from dynamix_spark.generate import write_raw
from dynamix_spark.session import build_spark


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Generate raw DynamiX logs with planted engagement types", ds_required=False)
    args, cfg = parse_job_args(parser, argv)
    if args.ds:
        cfg = load_config(args.config, [*args.overrides, f"generator.start_date={args.ds}"])
    spark = build_spark(f"{cfg.spark.app_name}-generate_logs", cfg.spark.conf)
    counts = write_raw(spark, cfg.generator, cfg.paths.raw_root, cfg.paths.truth_root)
    print(json.dumps({"raw_root": cfg.paths.raw_root, "truth_root": cfg.paths.truth_root, "rows": counts,
                      "null_control": cfg.generator.null_control}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
