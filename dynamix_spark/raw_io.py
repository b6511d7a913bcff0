"""Reading a raw source partition under the contract.

Files are listed through Hadoop's FileSystem (local, HDFS or object stores alike) and their footers read
one by one, so that a problem is reported with the file that has it:
- a missing required column or a column whose type cannot be converted fails the read, naming the file
  and the column (``RawInputError``);
- an unreadable (corrupt) Parquet file fails the read naming the file;
- unknown extra columns are dropped with a warning; an optional contract column (``schemas.raw.OPTIONAL_COLUMNS``,
  e.g. the content's ``category_id``, added to the contract later) that a file lacks reads as null;
- values that do not parse as the contract's type become a quarantine reason ``unparsable:<column>``
  (row level), never a silent null.
Files with the same schema are read together, so the cost is one scan per distinct schema.

Which partitions a day needs (:func:`check_day_ready`, ``paths.required_sources``): a required source's
missing partition folder fails the day naming it; an optional source without a folder is absent and reads as
no rows (:func:`empty_raw_partition`), like a partition of 0-row files; a folder that exists must carry the
ready marker, optional or not.

Physical types written by other tools (docs/RELIABILITY.md, "Raw files written by other tools"): INT96 and
TIMESTAMP_MILLIS/MICROS timestamps, with or without a time zone, and ids as int32 or digit strings convert
with the casts below. TIMESTAMP(NANOS) columns, pandas' default for ``datetime64[ns]``, Spark cannot read as
timestamps at all: the session reads them as epoch nanoseconds (``spark.sql.legacy.parquet.nanosAsLong``,
set by ``dynamix_spark.session.build_spark``), the footer says which columns they are, and they are converted
here with integer arithmetic: floor to the microsecond (sub-microsecond digits truncated), a naive value
taken as UTC, like every naive timestamp here (the session time zone is UTC).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Collection

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructType, TimestampType

from schemas.names import UNPARSABLE, column_reason
from schemas.raw import OPTIONAL_COLUMNS, RAW_SCHEMAS, RAW_SOURCES

log = logging.getLogger(__name__)


class RawInputError(RuntimeError):
    """The raw input for a day is missing or breaks the contract at file level."""


def partition_path(raw_root: str, source: str, ds: str) -> str:
    return f"{raw_root.rstrip('/')}/{source}/ds={ds}"


def _hadoop(spark: SparkSession, path: str):
    """(Hadoop FileSystem, Hadoop Path) for ``path``: local folders and object stores alike."""
    hpath = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def list_parquet_files(spark: SparkSession, path: str) -> list[str]:
    """Data files of a partition folder (hidden and ``_``-prefixed files skipped); error if it is missing."""
    fs, hpath = _hadoop(spark, path)
    if not fs.exists(hpath):
        raise RawInputError(f"missing raw input: {path} does not exist")
    files = []
    for st in fs.listStatus(hpath):
        name = st.getPath().getName()
        if st.isFile() and not name.startswith(("_", ".")):
            if st.getLen() == 0:
                # A zero-byte file holds no rows: nothing is lost by skipping it, but say so.
                log.warning("skipping empty (0-byte) raw file %s", st.getPath().toString())
                continue
            files.append(st.getPath().toString())
    return sorted(files)


def check_partition_ready(spark: SparkSession, raw_root: str, source: str, ds: str, marker: str) -> list[str]:
    """The data files of a raw partition, after checking it exists and (``marker`` != "") is marked complete."""
    path = partition_path(raw_root, source, ds)
    files = list_parquet_files(spark, path)
    if marker:
        fs, hpath = _hadoop(spark, f"{path}/{marker}")
        if not fs.exists(hpath):
            raise RawInputError(f"incomplete raw input: {path} has no {marker} marker (the landing job has not "
                                f"finished the day; paths.raw_ready_marker)")
    return files


def partition_exists(spark: SparkSession, raw_root: str, source: str, ds: str) -> bool:
    fs, hpath = _hadoop(spark, partition_path(raw_root, source, ds))
    return bool(fs.exists(hpath))


def check_day_ready(spark: SparkSession, raw_root: str, ds: str, marker: str,
                    required: Collection[str]) -> tuple[str, ...]:
    """The sources whose raw partition of ``ds`` is there to read, in contract order; the others are absent.

    Checked for every source before anything is read (``paths.required_sources``, ``paths.raw_ready_marker``):
    - a required source's partition must exist and be marked complete, or ``RawInputError`` naming it;
    - an optional source without a partition folder for the day is absent: left out, not an error;
    - a folder that exists is checked like a required one, optional or not: a folder without its marker is a
      landing job still writing, not an absent source.
    """
    present = []
    for src in RAW_SOURCES:
        if src not in required and not partition_exists(spark, raw_root, src, ds):
            continue
        try:
            check_partition_ready(spark, raw_root, src, ds, marker)
        except RawInputError as e:
            if src in required:
                raise RawInputError(f"{e} [{src} is a required source: paths.required_sources]") from None
            raise
        present.append(src)
    return tuple(present)


def mark_partition_ready(spark: SparkSession, path: str, marker: str = "_SUCCESS") -> None:
    """Write the empty completeness marker (``paths.raw_ready_marker``) into a raw partition folder."""
    fs, hpath = _hadoop(spark, f"{path}/{marker}")
    fs.create(hpath, True).close()


NANOS_AS_LONG_CONF = "spark.sql.legacy.parquet.nanosAsLong"


def _unreadable(file: str, e: Exception) -> RawInputError:
    java = getattr(e, "java_exception", None)  # a py4j call's own message says only which method failed
    detail = str(java.toString()) if java is not None else str(e)
    return RawInputError(f"{file}: unreadable Parquet file ({type(e).__name__}: {detail.splitlines()[0][:300]})")


def _nanos_columns(spark: SparkSession, file: str) -> frozenset[str]:
    """Top-level columns of ``file`` stored as TIMESTAMP(NANOS, ...), from its Parquet footer (any Hadoop FS)."""
    parquet = spark.sparkContext._jvm.org.apache.parquet.hadoop
    fs, hpath = _hadoop(spark, file)
    reader = parquet.ParquetFileReader.open(parquet.util.HadoopInputFile.fromPath(hpath, fs.getConf()))
    try:
        names = set()
        for field in reader.getFooter().getFileMetaData().getSchema().getFields():
            logical = field.getLogicalTypeAnnotation()
            if logical is not None and logical.toString().startswith("TIMESTAMP(NANOS"):
                names.add(field.getName())
        return frozenset(names)
    finally:
        reader.close()


def _file_schema(spark: SparkSession, file: str) -> tuple[StructType, frozenset[str]]:
    """Spark's schema of ``file`` and its TIMESTAMP(NANOS) columns (bigint epoch nanoseconds in that schema)."""
    try:
        nanos = _nanos_columns(spark, file)
    except Exception as e:  # py4j wraps the reader's IOException
        raise _unreadable(file, e)
    if nanos and str(spark.conf.get(NANOS_AS_LONG_CONF, "false")).lower() != "true":
        raise RawInputError(f"{file}: columns {sorted(nanos)} are TIMESTAMP(NANOS) (pandas' default for datetime64[ns]),"
                            f" which Spark reads only with {NANOS_AS_LONG_CONF}=true (dynamix_spark.session sets it)")
    try:
        schema = spark.read.parquet(file).schema
    except Exception as e:  # Spark wraps footer errors in several exception types
        raise _unreadable(file, e)
    for name in nanos:
        if name in schema.fieldNames() and not isinstance(schema[name].dataType, LongType):
            raise RawInputError(f"{file}: TIMESTAMP(NANOS) column '{name}' read as {schema[name].dataType.simpleString()},"
                                f" not as epoch nanoseconds")
    return schema, nanos


def _micros_from_nanos(name: str) -> Column:
    """Epoch nanoseconds -> timestamp, floored to the microsecond in exact long arithmetic (no double: a double
    holds epoch nanoseconds of today only to about 256 ns; no ``c - pmod(c, 1000)``: it could overflow)."""
    c = f"`{name}`"
    return F.timestamp_micros(F.expr(f"{c} div 1000 - if({c} % 1000 < 0, 1, 0)"))


def _typed_column(name: str, file_type, contract_type) -> tuple[Column, Column | None]:
    """(column cast to the contract type, 'value did not parse' flag or None when types already match)."""
    raw = F.col(f"`{name}`")
    if file_type == contract_type:
        return raw.alias(name), None
    typed = raw.try_cast(contract_type)
    return typed.alias(name), raw.isNotNull() & typed.isNull()


def read_raw_partition(spark: SparkSession, raw_root: str, source: str, ds: str, ready_marker: str = "") -> DataFrame:
    """Contract-typed rows of one raw partition with ``_source_file``, ``_reason`` and ``_original``.

    ``_reason`` is ``unparsable:<column>`` for a row with a value that does not convert, else null;
    ``_original`` is the row as read, as JSON, for those rows only (it goes to quarantine).
    """
    contract = RAW_SCHEMAS[source]
    files = check_partition_ready(spark, raw_root, source, ds, ready_marker)
    # A nanos column and a genuine bigint have the same Spark schema: the nanos columns are part of the key.
    groups: dict[tuple[str, frozenset[str]], list[str]] = defaultdict(list)
    schemas: dict[tuple[str, frozenset[str]], StructType] = {}
    for f in files:
        s, nanos = _file_schema(spark, f)
        key = (s.json(), nanos)
        schemas[key] = s
        groups[key].append(f)

    parts: list[DataFrame] = []
    for key, group in groups.items():
        schema, nanos = schemas[key], key[1]
        by_name = {fld.name: fld for fld in schema.fields}
        lacking = [f.name for f in contract.fields if f.name not in by_name]
        required = [c for c in lacking if c not in OPTIONAL_COLUMNS.get(source, ())]
        if required:
            raise RawInputError(f"{group[0]}: missing required column '{required[0]}' for source {source}")
        if lacking:
            log.info("%s: optional columns %s absent, read as null (%d file(s) of %s)", group[0], lacking, len(group), source)
        extra = sorted(set(by_name) - {f.name for f in contract.fields} - {"ds"})
        if extra:
            log.warning("%s: ignoring unknown columns %s (%d file(s) of %s)", group[0], extra, len(group), source)
        cols, flags = [], []
        for fld in contract.fields:
            if fld.name not in by_name:  # an optional column this file lacks
                cols.append(F.lit(None).cast(fld.dataType).alias(fld.name))
                continue
            if fld.name in nanos:
                if not isinstance(fld.dataType, TimestampType):
                    raise RawInputError(f"{group[0]}: column '{fld.name}' is a TIMESTAMP(NANOS) column, the {source} "
                                        f"contract wants {fld.dataType.simpleString()}")
                cols.append(_micros_from_nanos(fld.name).alias(fld.name))  # every long converts: no flag
                continue
            col, bad = _typed_column(fld.name, by_name[fld.name].dataType, fld.dataType)
            cols.append(col)
            if bad is not None:
                flags.append((fld.name, bad))
        reason = F.lit(None).cast("string")
        for name, bad in reversed(flags):
            reason = F.when(bad, F.lit(column_reason(UNPARSABLE, name))).otherwise(reason)
        original = F.to_json(F.struct(*[F.col(f"`{n}`") for n in by_name if n != "ds"]))
        df = spark.read.schema(schema).parquet(*group)
        try:
            part = df.select(
                *cols,
                F.input_file_name().alias("_source_file"),
                reason.alias("_reason"),
                F.when(reason.isNotNull(), original).alias("_original"),
            )
            part.schema  # analysis happens here: a cast Spark cannot do at all names the file
        except AnalysisException as e:
            raise RawInputError(f"{group[0]}: a column cannot be converted to the {source} contract: "
                                f"{str(e).splitlines()[0][:300]}")
        parts.append(part)
    if not parts:
        return empty_raw_partition(spark, source)
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def empty_raw_partition(spark: SparkSession, source: str) -> DataFrame:
    """No rows, with the columns of :func:`read_raw_partition`: a partition of 0-row files, or an absent one."""
    empty = spark.createDataFrame([], RAW_SCHEMAS[source])
    return empty.select("*", F.lit(None).cast("string").alias("_source_file"),
                        F.lit(None).cast("string").alias("_reason"),
                        F.lit(None).cast("string").alias("_original"))
