"""``dynamix sql "SELECT ..."``: SQL over the lake's tables from a session with Delta and the profile's catalog.

    dynamix sql "SELECT segment, count(*) FROM dynamix.user_window_stats WHERE ds = '2026-11-02' GROUP BY segment"
    dynamix sql --config conf/cluster.yaml --format tsv "DESCRIBE HISTORY dynamix.ebf_examples"
    python jobs/sql.py "..."                      # the same, without the console script

The session is the jobs' session (``build_spark`` with the profile's ``spark.conf``), so it sees the catalog
the maintenance job registered the tables in (``paths.database``; a persistent Derby metastore in the local
profile). Read-only unless ``--allow-writes``: a statement that would write (DML, DDL, OPTIMIZE, VACUUM,
RESTORE, ...) is refused with exit code 3 before anything runs. Where the session's catalog is the in-memory
one, or with ``--register``, the lake's tables are (re-)registered first, so ``dynamix.<table>`` always resolves. Each statement's result is printed in turn.
"""
from __future__ import annotations

import argparse
import sys

from dynamix_spark.config import ConfigError, load_config


# Read-only by default: a statement runs only if its parsed plan reads. Commands (Spark's logical Command plans:
# DDL, DML, OPTIMIZE, VACUUM, ...) are refused except these, which only describe or set session state; plans that
# are not commands are queries, except the two writes the parser leaves as plain statements.
READ_ONLY_COMMANDS = frozenset({
    "DescribeRelation", "DescribeColumn", "DescribeNamespace", "DescribeFunction", "DescribeDeltaDetailCommand",
    "ShowTables", "ShowTableExtended", "ShowViews", "ShowNamespaces", "ShowPartitions", "ShowColumns",
    "ShowCreateTable", "ShowTableProperties", "ShowFunctions", "ShowCatalogs", "ShowCurrentNamespace",
    "ExplainCommand", "SetCommand", "SetCatalogAndNamespace",
})
WRITING_STATEMENTS = frozenset({"InsertIntoStatement", "RestoreTableStatement"})


def writes(spark, statement: str) -> str | None:
    """The plan name of a statement that would change a table or the catalog, or None for a read.

    Decided on the parsed (unresolved) plan, so nothing runs and no table needs to exist. A statement that does
    not parse returns None: running it reports the parse error.
    """
    jvm = spark.sparkContext._jvm
    try:
        plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(statement)
    except Exception:  # py4j wraps the ParseException
        return None
    name = plan.getClass().getSimpleName()
    command = jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command").isInstance(plan)
    if (command and name not in READ_ONLY_COMMANDS) or (not command and name in WRITING_STATEMENTS):
        return name
    return None


def _print(df, fmt: str, max_rows: int) -> None:
    if not df.columns:  # a command with no result set (CREATE, SET, ...)
        print("OK")
        return
    if fmt == "table":
        df.show(max_rows, truncate=False)
        return
    print("\t".join(df.columns))
    for row in df.limit(max_rows).collect():
        print("\t".join("NULL" if v is None else str(v) for v in row))


def sql_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynamix", description="DynamiX operations commands")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("sql", help="run SQL statements over the lake's tables and print the results")
    q.add_argument("statements", nargs="+", metavar="STATEMENT", help="one SQL statement per argument")
    q.add_argument("--config", default="conf/local.yaml", help="YAML profile (default: conf/local.yaml)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    q.add_argument("--format", choices=("table", "tsv"), default="table")
    q.add_argument("--max-rows", type=int, default=100, help="rows printed per statement (default 100)")
    q.add_argument("--allow-writes", action="store_true",
                   help="run statements that write (INSERT, DELETE, CREATE, DROP, OPTIMIZE, VACUUM, ...); "
                        "without it they are refused")
    q.add_argument("--register", action="store_true",
                   help="(re-)register the lake's tables in paths.database before the statements")
    return p


def main(argv: list[str] | None = None) -> int:
    args = sql_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from dynamix_spark.catalog import register_tables
    from dynamix_spark.session import build_spark

    spark = build_spark(f"{cfg.spark.app_name}-sql", cfg.spark.conf)
    if args.register or spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "hive":
        reg = register_tables(spark, cfg.paths.lake_root, cfg.paths.database)
        print(f"-- registered {len(reg.tables)} tables in {reg.database} ({reg.catalog} catalog)", file=sys.stderr)
    from pyspark.errors import PySparkException

    refused = [(st, w) for st in args.statements if not args.allow_writes and (w := writes(spark, st))]
    if refused:  # checked for every statement before any runs
        for statement, plan in refused:
            print(f"refused ({plan} writes; dynamix sql is read-only, pass --allow-writes): {statement}",
                  file=sys.stderr)
        return 3
    for statement in args.statements:
        try:
            _print(spark.sql(statement), args.format, args.max_rows)
        except PySparkException as e:  # a wrong statement: say which and why, no JVM stack trace
            reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            print(f"error in: {statement}\n{reason}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
