"""Do two lakes hold the same tables? The check that a refactor changed no table's content (issue 17).

    .venv/bin/python scripts/compare_lakes.py LAKE_A LAKE_B [--ds 2026-11-01 ...] [--replace A_TEXT=B_TEXT ...]

Every table of the registry in ``schemas/`` (``schemas.tables.PIPELINE_TABLES``: the clean tables, quarantine,
user_window_stats, user_segments, ebf_examples, run_metrics, and any table added there later; and
``quality_results``) is read from both lakes as a Delta table, every ``ds`` it holds (or those of ``--ds``),
and compared as a multiset of rows: order does not matter, a row that occurs twice in one lake must occur twice
in the other (``exceptAll`` both ways). Values compare exactly (``--round N``: doubles rounded to N decimals
first); map columns compare as their entries sorted by key. A table absent from both lakes is reported and is
not a difference; absent from one, or with other columns, it is.

Columns that legitimately differ from run to run are left out of the comparison:

- in every table, ``run_id``, every column whose name ends in ``_at`` (``started_at``, ``ended_at``,
  ``checked_at``: wall-clock times) and every column whose name ends in ``versions`` (``delta_versions``: the
  Delta versions a run committed, which depend on the lake's history, not on the day's content);
- ``run_metrics.params`` (JSON of the run's parameters: paths, the run's gate seconds);
- ``quality_results.gate_seconds`` (wall seconds) and ``quality_results.details`` (GX's result JSON, which
  holds paths and the audit inputs; ``observed``, ``success`` and ``severity`` are compared).

Paths written into the rows (``quarantine.source_file``, the ``observed`` of ``source_present``) are the same
when both lakes were built from the same raw folder; otherwise ``--replace /raw/of/a=/raw/of/b`` rewrites that
text in lake A's string columns before comparing.

Prints one line per table (``equal`` or ``DIFFERENT`` with the row counts and the rows found only in A and
only in B, by ``ds`` when different) and exits 1 when any table differs, 0 when none does, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyspark.sql import Column, DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import DoubleType, MapType, StringType  # noqa: E402

from dynamix_spark.delta_io import is_delta, table_path  # noqa: E402
from schemas.expectations import QUALITY_RESULTS  # noqa: E402
from schemas.names import QUALITY_RESULTS_TABLE, RUN_METRICS_TABLE  # noqa: E402
from schemas.tables import PIPELINE_TABLES  # noqa: E402

# Run-specific columns of particular tables (see the module docstring); run_id, *_at and *versions are left out
# of every table.
RUN_SPECIFIC: dict[str, tuple[str, ...]] = {
    RUN_METRICS_TABLE: ("params",),
    QUALITY_RESULTS_TABLE: ("gate_seconds", "details"),
}


def registry() -> list[str]:
    """The tables compared: the pipeline's registry and the quality gates' results, by name."""
    return sorted({*PIPELINE_TABLES, QUALITY_RESULTS_TABLE})


def _registered_schema_columns(table: str) -> list[str] | None:
    schema = QUALITY_RESULTS if table == QUALITY_RESULTS_TABLE else PIPELINE_TABLES.get(table)
    return schema.fieldNames() if schema is not None else None


def run_specific(table: str, column: str) -> bool:
    return (column == "run_id" or column.endswith("_at") or column.endswith("versions")
            or column in RUN_SPECIFIC.get(table, ()))


@dataclass
class TableComparison:
    table: str
    status: str  # equal | different | absent (from both lakes)
    rows_a: int = 0
    rows_b: int = 0
    only_a: int = 0  # rows of A beyond their multiplicity in B
    only_b: int = 0
    only_by_ds: dict[str, tuple[int, int]] = field(default_factory=dict)  # ds -> (only_a, only_b)
    excluded: tuple[str, ...] = ()
    note: str = ""

    def line(self) -> str:
        if self.status == "absent":
            return f"{self.table}: absent from both lakes"
        head = f"{self.table}: {'equal' if self.status == 'equal' else 'DIFFERENT'}"
        if self.note:
            head += f" ({self.note})"
        head += f"; rows A {self.rows_a}, B {self.rows_b}; only in A {self.only_a}, only in B {self.only_b}"
        if self.excluded:
            head += f"; not compared: {', '.join(self.excluded)}"
        if self.only_by_ds:
            head += "; by ds (A, B): " + ", ".join(f"{d} {a}/{b}" for d, (a, b) in sorted(self.only_by_ds.items()))
        return head


def _comparable(df: DataFrame, columns: list[str], round_digits: int | None,
                replace: list[tuple[str, str]]) -> DataFrame:
    """``df``'s ``columns`` in that order, maps as sorted entry arrays, doubles rounded, strings rewritten."""
    types = {f.name: f.dataType for f in df.schema.fields}
    out: list[Column] = []
    for c in columns:
        col, tp = F.col(c), types[c]
        if isinstance(tp, MapType):
            col = F.array_sort(F.map_entries(col))
        elif isinstance(tp, DoubleType) and round_digits is not None:
            col = F.round(col, round_digits)
        elif isinstance(tp, StringType):
            for old, new in replace:
                col = F.replace(col, F.lit(old), F.lit(new))
        out.append(col.alias(c))
    return df.select(*out)


def compare_table(spark: SparkSession, lake_a: str, lake_b: str, table: str, days: list[str] | None = None,
                  round_digits: int | None = None, replace: list[tuple[str, str]] | None = None) -> TableComparison:
    """Compare ``table`` of the two lakes as row multisets (``replace``: applied to lake A's string columns)."""
    path_a, path_b = table_path(lake_a, table), table_path(lake_b, table)
    here_a, here_b = is_delta(spark, path_a), is_delta(spark, path_b)
    if not here_a and not here_b:
        return TableComparison(table, "absent")
    if not (here_a and here_b):
        return TableComparison(table, "different", note=f"only in lake {'A' if here_a else 'B'}")
    a = spark.read.format("delta").load(path_a)
    b = spark.read.format("delta").load(path_b)
    if days:
        a, b = a.where(F.col("ds").isin(days)), b.where(F.col("ds").isin(days))
    if set(a.columns) != set(b.columns):
        return TableComparison(table, "different", a.count(), b.count(),
                               note=f"columns differ: only A {sorted(set(a.columns) - set(b.columns))}, "
                                    f"only B {sorted(set(b.columns) - set(a.columns))}")
    declared = _registered_schema_columns(table) or []
    columns = sorted(a.columns, key=lambda c: (declared.index(c) if c in declared else len(declared), c))
    kept = [c for c in columns if not run_specific(table, c)]
    excluded = tuple(c for c in columns if run_specific(table, c))
    ca = _comparable(a, kept, round_digits, replace or [])
    cb = _comparable(b, kept, round_digits, [])
    rows_a, rows_b = ca.count(), cb.count()
    by_ds: dict[str, list[int]] = {}
    if "ds" in kept:
        # one day at a time: ebf_examples' arrays over every day in one exceptAll ran the demo lake's 1 GB
        # driver out of heap (2026-12-03); a day's rows are a few hundred MB at most
        all_days = sorted({r["ds"] for df in (a, b) for r in df.select("ds").distinct().collect()})
        for d in all_days:
            da, db = ca.where(F.col("ds") == d), cb.where(F.col("ds") == d)
            counts = [da.exceptAll(db).count(), db.exceptAll(da).count()]
            if any(counts):
                by_ds[d] = counts
        n_a, n_b = sum(v[0] for v in by_ds.values()), sum(v[1] for v in by_ds.values())
    else:
        n_a, n_b = ca.exceptAll(cb).count(), cb.exceptAll(ca).count()
    equal = n_a == 0 and n_b == 0 and rows_a == rows_b
    return TableComparison(table, "equal" if equal else "different", rows_a, rows_b, n_a, n_b,
                           {d: (v[0], v[1]) for d, v in by_ds.items()}, excluded)


def compare_lakes(spark: SparkSession, lake_a: str, lake_b: str, tables: list[str] | None = None,
                  on_result: Callable[[TableComparison], None] | None = None, **kwargs) -> list[TableComparison]:
    """Every table's comparison; ``on_result`` is called with each as soon as it is known (a table of a demo
    lake takes minutes)."""
    out = []
    for t in tables or registry():
        out.append(compare_table(spark, lake_a, lake_b, t, **kwargs))
        if on_result is not None:
            on_result(out[-1])
    return out


def main(argv: list[str] | None = None, spark: SparkSession | None = None) -> int:
    p = argparse.ArgumentParser(description="Compare two lakes' Delta tables as row multisets (exit 1 on a difference)")
    p.add_argument("lake_a")
    p.add_argument("lake_b")
    p.add_argument("--ds", action="append", default=[], help="compare only this day (repeatable; default: all)")
    p.add_argument("--table", action="append", default=[], help=f"only this table (default: all of {registry()})")
    p.add_argument("--round", dest="round_digits", type=int, help="round doubles to N decimals before comparing")
    p.add_argument("--replace", action="append", default=[], metavar="A_TEXT=B_TEXT",
                   help="rewrite A_TEXT in lake A's string columns (a path that differs between the lakes)")
    args = p.parse_args(argv)
    unknown = [t for t in args.table if t not in registry()]
    bad = [r for r in args.replace if "=" not in r]
    if unknown or bad:
        print(f"compare_lakes: unknown tables {unknown} (known: {registry()})" if unknown
              else f"compare_lakes: --replace needs A_TEXT=B_TEXT, got {bad}", file=sys.stderr)
        return 2
    for lake in (args.lake_a, args.lake_b):
        if not Path(lake).is_dir():
            print(f"compare_lakes: no such folder {lake}", file=sys.stderr)
            return 2
    if spark is None:
        from dynamix_spark.session import build_spark

        spark = build_spark("compare-lakes", {"spark.sql.shuffle.partitions": "32"})
    results = compare_lakes(spark, str(Path(args.lake_a).resolve()), str(Path(args.lake_b).resolve()),
                            args.table or None, on_result=lambda r: print(r.line(), flush=True),
                            days=args.ds or None, round_digits=args.round_digits,
                            replace=[tuple(r.split("=", 1)) for r in args.replace])
    different = [r.table for r in results if r.status == "different"]
    print(f"{len(results) - len(different)} of {len(results)} tables equal or absent from both"
          + (f"; DIFFERENT: {', '.join(different)}" if different else ""))
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
