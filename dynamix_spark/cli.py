"""The command line every job shares: ``--config conf/<profile>.yaml --ds YYYY-MM-DD [--set KEY=VALUE]``."""
from __future__ import annotations

import argparse
import datetime as dt
import sys

from dynamix_spark.config import Config, ConfigError, load_config
from schemas.dates import date_range


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}")


def job_parser(description: str, *, ds_required: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default="conf/local.yaml", help="YAML profile (default: conf/local.yaml)")
    p.add_argument("--ds", type=_date, required=ds_required, help="the UTC date to process, YYYY-MM-DD")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set stats.forecast_horizon_s=600 (repeatable)")
    return p


def job_days(args: argparse.Namespace) -> list[str]:
    """The days of a run over ``--ds`` .. ``--until`` (inclusive; ``--ds`` alone without ``--until``)."""
    try:
        return date_range(args.ds, args.until)
    except ValueError:
        raise SystemExit(f"--until {args.until} is before --ds {args.ds}") from None


def parse_job_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> tuple[argparse.Namespace, Config]:
    """Parse arguments and load the config; a config error exits 2 with the key named, before Spark starts."""
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2)
    return args, cfg
