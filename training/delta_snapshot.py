"""JVM-free reading of a Delta table's live files at a pinned version (Delta protocol, "Action Reconciliation").

Training must not start a JVM to learn which Parquet files to read, and it must read exactly one version of
``ebf_examples`` even while the nightly job rewrites a partition (``replaceWhere`` leaves the replaced files
in the folder, only marked removed in the log). So this module replays ``_delta_log`` itself:

1. the newest classic checkpoint at or before the version (``_last_checkpoint`` when it points at or before
   the version, otherwise the newest complete one found by listing), single- or multi-part Parquet;
2. then the JSON commits after it, in order, up to the version: an ``add`` makes a file live, a ``remove``
   ends it (keyed by path and deletion-vector id, as the protocol says).

What it refuses, with a message, rather than return a wrong file set:

- live files with deletion vectors (the rows a vector deletes would be read back);
- column mapping (``delta.columnMapping.mode`` other than ``none``: Parquet column names are not the table's);
- reader features it does not know (``minReaderVersion`` 3 with ``readerFeatures`` outside
  :data:`SAFE_READER_FEATURES`), and V2 (UUID-named) checkpoints;
- a version whose commits were cleaned up with no checkpoint to start from.

Partition values are returned as the log stores them: strings (the serialized typed value, ``"0"`` for an int
partition ``segment = 0``; ``None`` for a null partition). :attr:`DeltaSnapshot.partition_types` gives each
partition column's Delta type so a caller can convert.

:func:`published_snapshot` gives the training side the run ledger's reading (``dynamix_spark.ledger``, the same
rules without a JVM): each day's files at the version of the last run that published the day, rolled forward over
later commits that leave the day's rows as they were; the latest version for a day no run published.
:func:`training_snapshot` is what ``training/train.py`` reads: that view of every day, or one pinned version.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlparse

from schemas.names import RUN_LEDGER_TABLE

LOG_DIR = "_delta_log"
_COMMIT_RE = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT_RE = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_MULTIPART_RE = re.compile(r"^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$")
_V2_CHECKPOINT_RE = re.compile(r"^(\d{20})\.checkpoint\.[0-9a-fA-F-]{36}\.(json|parquet)$")

# Reader features whose presence alone does not change which rows a Parquet file holds. deletionVectors and
# columnMapping are allowed as features and refused where they are actually in use (a live file with a vector,
# a mapping mode other than none).
SAFE_READER_FEATURES = frozenset({"deletionVectors", "columnMapping", "timestampNtz", "vacuumProtocolCheck"})


class DeltaLogError(RuntimeError):
    """The log cannot produce the requested version (not a Delta table, version out of range, commits gone)."""


class UnsupportedDeltaFeature(RuntimeError):
    """The table uses a Delta feature this reader does not implement; read it with Spark instead."""


@dataclass(frozen=True)
class DeltaFile:
    """One live data file of a snapshot."""
    path: str  # absolute local path
    partition_values: Mapping[str, str | None]  # as serialized in the log: strings, None for null
    size: int  # bytes
    num_records: int | None  # from the add action's stats JSON; None when the writer kept no stats

    @property
    def url(self) -> str:
        # Not Path.as_uri(): that percent-encodes '=' in hive-style folder names, and Petastorm takes the
        # URL's path verbatim.
        return "file://" + self.path


@dataclass(frozen=True)
class DeltaSnapshot:
    table_path: str  # absolute
    version: int
    files: tuple[DeltaFile, ...]  # sorted by path
    partition_columns: tuple[str, ...]
    partition_types: Mapping[str, str]  # partition column -> Delta type name ("string", "integer", ...)
    schema: Mapping[str, Any] = field(repr=False)  # the metaData schemaString, parsed
    configuration: Mapping[str, str] = field(default_factory=dict)
    checkpoint_version: int | None = None  # the checkpoint the replay started from, if any
    # {ds: the version that day's files are taken at} (published_snapshot, days_snapshot, training_snapshot);
    # ``version`` is the largest of them
    day_versions: Mapping[str, int] = field(default_factory=dict)

    @property
    def num_records(self) -> int | None:
        counts = [f.num_records for f in self.files]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[arg-type]


def _log_dir(table_path: str) -> str:
    return os.path.join(os.path.abspath(table_path), LOG_DIR)


def _list_log(table_path: str) -> tuple[dict[int, str], dict[int, list[str]], list[tuple[int, str]]]:
    """(commit version -> file, checkpoint version -> complete part files, v2 checkpoints)."""
    log = _log_dir(table_path)
    try:
        names = os.listdir(log)
    except FileNotFoundError:
        raise DeltaLogError(f"{table_path} is not a Delta table: no {LOG_DIR} folder") from None
    commits: dict[int, str] = {}
    single: dict[int, str] = {}
    parts: dict[int, dict[int, dict[int, str]]] = {}  # version -> number of parts -> part -> file
    v2: list[tuple[int, str]] = []
    for n in names:
        if m := _COMMIT_RE.match(n):
            commits[int(m.group(1))] = os.path.join(log, n)
        elif m := _CHECKPOINT_RE.match(n):
            single[int(m.group(1))] = os.path.join(log, n)
        elif m := _MULTIPART_RE.match(n):
            v, part, total = int(m.group(1)), int(m.group(2)), int(m.group(3))
            parts.setdefault(v, {}).setdefault(total, {})[part] = os.path.join(log, n)
        elif m := _V2_CHECKPOINT_RE.match(n):
            v2.append((int(m.group(1)), n))
    checkpoints: dict[int, list[str]] = {v: [p] for v, p in single.items()}
    for v, by_total in parts.items():
        for total, got in by_total.items():
            if len(got) == total and v not in checkpoints:  # an incomplete multi-part checkpoint is unusable
                checkpoints[v] = [got[i] for i in sorted(got)]
    return commits, checkpoints, v2


def latest_version(table_path: str) -> int:
    """The newest committed version of the table at ``table_path``."""
    commits, checkpoints, v2 = _list_log(table_path)
    versions = list(commits) + list(checkpoints) + [v for v, _ in v2]
    if not versions:
        raise DeltaLogError(f"{table_path}: {LOG_DIR} holds no commits")
    return max(versions)


def _last_checkpoint_hint(table_path: str) -> int | None:
    try:
        with open(os.path.join(_log_dir(table_path), "_last_checkpoint")) as f:
            return int(json.load(f)["version"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None


def _dv_id(dv: Mapping[str, Any] | None) -> str | None:
    """The protocol's deletion-vector uniqueId (storageType + pathOrInlineDv [+ '@' + offset])."""
    if not dv:
        return None
    uid = f"{dv.get('storageType', '')}{dv.get('pathOrInlineDv', '')}"
    return uid + (f"@{dv['offset']}" if dv.get("offset") is not None else "")


def _as_dict(string_map: Any) -> dict[str, str | None]:
    # JSON commits give a dict; a checkpoint's Parquet map comes back from pyarrow as (key, value) tuples
    if string_map is None:
        return {}
    if isinstance(string_map, Mapping):
        return dict(string_map)
    return {k: v for k, v in string_map}


def _num_records(add: Mapping[str, Any]) -> int | None:
    stats = add.get("stats")
    if stats:
        n = json.loads(stats).get("numRecords")
        return None if n is None else int(n)
    parsed = add.get("stats_parsed")  # checkpoints written with writeStatsAsStruct only
    if parsed and parsed.get("numRecords") is not None:
        return int(parsed["numRecords"])
    return None


class _Replay:
    """Accumulates actions in commit order; the last metaData/protocol win."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str | None], Mapping[str, Any]] = {}
        self.metadata: Mapping[str, Any] | None = None
        self.protocol: Mapping[str, Any] | None = None

    def apply(self, action: Mapping[str, Any]) -> None:
        if (add := action.get("add")) is not None:
            self.live[(add["path"], _dv_id(add.get("deletionVector")))] = add
        elif (rm := action.get("remove")) is not None:
            self.live.pop((rm["path"], _dv_id(rm.get("deletionVector"))), None)
        elif (md := action.get("metaData")) is not None:
            self.metadata = md
        elif (pr := action.get("protocol")) is not None:
            self.protocol = pr


def _read_checkpoint(replay: _Replay, files: Iterable[str]) -> None:
    import pyarrow.parquet as pq

    for path in files:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        if "sidecar" in names or "checkpointMetadata" in names:
            raise UnsupportedDeltaFeature(f"{path}: V2 checkpoint (sidecar files) is not supported")
        cols = [c for c in ("protocol", "metaData", "remove", "add") if c in names]
        table = pf.read(columns=cols)
        # A checkpoint holds the reconciled state: no path is both added and removed, so order is free.
        for col in cols:
            for value in table.column(col).to_pylist():
                if value is not None:
                    replay.apply({col: value})


def _resolve(table_path: str, raw: str) -> str:
    """An add action's path (URL-encoded, relative to the table or an absolute URI) as a local path."""
    parsed = urlparse(raw)
    if parsed.scheme in ("", None):
        return os.path.normpath(os.path.join(table_path, unquote(raw)))
    if parsed.scheme == "file":
        return os.path.normpath(unquote(parsed.path))
    raise UnsupportedDeltaFeature(f"data file {raw!r} is not on the local filesystem")


def _check_features(table_path: str, replay: _Replay, version: int) -> None:
    pr = replay.protocol or {}
    reader_version = int(pr.get("minReaderVersion", 1))
    if reader_version > 3:
        raise UnsupportedDeltaFeature(f"{table_path}@v{version}: minReaderVersion {reader_version} is not supported")
    if reader_version == 3:
        unknown = sorted(set(pr.get("readerFeatures") or ()) - SAFE_READER_FEATURES)
        if unknown:
            raise UnsupportedDeltaFeature(
                f"{table_path}@v{version}: reader features {unknown} are not supported by this reader "
                f"(supported: {sorted(SAFE_READER_FEATURES)}); read the table with Spark")
    conf = _as_dict((replay.metadata or {}).get("configuration"))
    mode = conf.get("delta.columnMapping.mode", "none")
    if mode not in (None, "none"):
        raise UnsupportedDeltaFeature(
            f"{table_path}@v{version}: column mapping mode {mode!r} is not supported (Parquet column names "
            "differ from the table's); read the table with Spark")
    with_dv = [a["path"] for a in replay.live.values() if a.get("deletionVector")]
    if with_dv:
        raise UnsupportedDeltaFeature(
            f"{table_path}@v{version}: {len(with_dv)} live files carry deletion vectors (e.g. {with_dv[0]}); "
            "this reader does not apply them. Purge them (REORG TABLE ... APPLY (PURGE)) or read with Spark")


def load_snapshot(table_path: str, version: int | None = None) -> DeltaSnapshot:
    """The live files of the table at ``version`` (the latest when None)."""
    table_path = os.path.abspath(table_path)
    commits, checkpoints, v2 = _list_log(table_path)
    latest = latest_version(table_path)
    if version is None:
        version = latest
    if version < 0 or version > latest:
        raise DeltaLogError(f"{table_path}: version {version} does not exist (latest is {latest})")

    # _last_checkpoint names the newest checkpoint; the listing also finds older ones for time travel.
    hint = _last_checkpoint_hint(table_path)
    usable = [v for v in checkpoints if v <= version] + ([hint] if hint is not None and hint <= version
                                                          and hint in checkpoints else [])
    start = max(usable, default=None)

    replay = _Replay()
    first = 0
    if start is not None:
        _read_checkpoint(replay, checkpoints[start])
        first = start + 1
    missing = [v for v in range(first, version + 1) if v not in commits]
    if missing:
        newer_v2 = [n for v, n in v2 if missing[-1] <= v <= version]
        if newer_v2:
            raise UnsupportedDeltaFeature(f"{table_path}: version {version} needs V2 checkpoint {newer_v2[-1]}, "
                                          "which this reader does not support")
        raise DeltaLogError(
            f"{table_path}: version {version} cannot be reconstructed: commits {missing[:5]} are missing and no "
            f"checkpoint at or after {missing[-1]} (and at or before {version}) exists (log cleaned up?)")
    for v in range(first, version + 1):
        with open(commits[v]) as f:
            for line in f:
                if line.strip():
                    replay.apply(json.loads(line))
    if replay.metadata is None:
        raise DeltaLogError(f"{table_path}@v{version}: no metaData action in the log")
    _check_features(table_path, replay, version)

    md = replay.metadata
    schema = json.loads(md["schemaString"])
    types = {f["name"]: f["type"] for f in schema.get("fields", [])}
    part_cols = tuple(md.get("partitionColumns") or ())
    files = sorted(
        (DeltaFile(path=_resolve(table_path, a["path"]), partition_values=_as_dict(a.get("partitionValues")),
                   size=int(a.get("size") or 0), num_records=_num_records(a))
         for a in replay.live.values()),
        key=lambda f: f.path)
    return DeltaSnapshot(
        table_path=table_path, version=version, files=tuple(files), partition_columns=part_cols,
        partition_types={c: str(types.get(c)) for c in part_cols}, schema=schema,
        configuration=_as_dict(md.get("configuration")), checkpoint_version=start)


def live_files(table_path: str, version: int | None = None) -> list[DeltaFile]:
    """Shorthand for ``load_snapshot(table_path, version).files``."""
    return list(load_snapshot(table_path, version).files)


# The run ledger (RUN_LEDGER_TABLE, written by dynamix_spark.ledger.append_ledger) is a Delta table beside the
# others under the lake root, partitioned by ds, with a map column ``versions`` {table: version}.

def recorded_versions(lake_root: str, table: str, days: Iterable[str]) -> dict[str, int]:
    """{day: the largest version of ``table`` that a ``run_ledger`` row of that day recorded}; days without one
    (or a lake without a ledger) are absent."""
    import pyarrow.parquet as pq

    days = set(days)
    ledger = os.path.join(os.path.abspath(lake_root), RUN_LEDGER_TABLE)
    if not days or not os.path.isdir(_log_dir(ledger)):
        return {}
    out: dict[str, int] = {}
    for f in load_snapshot(ledger).files:
        day = f.partition_values.get("ds")
        if day not in days:
            continue
        for m in pq.read_table(f.path, columns=["versions"]).column("versions").to_pylist():
            v = _as_dict(m).get(table)
            if v is not None:
                out[day] = max(out.get(day, -1), int(v))
    return out


def roll_forward(table_path: str, recorded: Mapping[str, int]) -> dict[str, int]:
    """{day: the newest version whose rows of ``day`` are those of ``recorded[day]``}: later commits that add or
    remove no file of the day with ``dataChange`` (another day's run, OPTIMIZE) are passed over; the first that
    does stops it. Where a later commit is gone from the log, the recorded versions as they are."""
    if not recorded:
        return {}
    commits, _, _ = _list_log(table_path)
    latest = latest_version(table_path)
    later = range(min(recorded.values()) + 1, latest + 1)
    if any(v not in commits for v in later):
        return dict(recorded)
    stops: dict[str, list[int]] = {}
    for v in later:
        with open(commits[v]) as f:
            for line in f:
                if not line.strip():
                    continue
                action = json.loads(line)
                for kind in ("add", "remove"):
                    a = action.get(kind)
                    if a is not None and a.get("dataChange", True) is not False:
                        day = _as_dict(a.get("partitionValues")).get("ds")
                        if day in recorded:
                            stops.setdefault(day, []).append(v)
    return {day: min((s for s in stops.get(day, ()) if s > v), default=latest + 1) - 1
            for day, v in recorded.items()}


def published_snapshot(table_path: str, days: Iterable[str], lake_root: str | None = None) -> DeltaSnapshot:
    """The live files of ``days`` of the ``ds``-partitioned table at ``table_path``, each day at the version of
    the last run that published it (the run ledger of ``lake_root``, by default the table's parent folder; see
    the module docstring), the latest version for a day without one. ``version`` is the largest version used,
    ``day_versions`` each day's."""
    table_path = os.path.abspath(table_path)
    lake_root = lake_root if lake_root is not None else os.path.dirname(table_path)
    days = sorted(set(days))
    rolled = roll_forward(table_path, recorded_versions(lake_root, os.path.basename(table_path), days))
    latest = latest_version(table_path)
    return days_snapshot(table_path, {d: rolled.get(d, latest) for d in days})


def days_snapshot(table_path: str, day_versions: Mapping[str, int]) -> DeltaSnapshot:
    """The live files of each day ``d`` of ``day_versions`` as they were at version ``day_versions[d]`` (one log
    replay per distinct version); ``version`` is the largest version used. A report's ``day_versions`` give the
    same rows back (a run's evaluation re-read by ``training.importance``)."""
    table_path = os.path.abspath(table_path)
    versions = sorted(set(day_versions.values())) or [latest_version(table_path)]
    snaps = {v: load_snapshot(table_path, v) for v in versions}
    newest = snaps[max(snaps)]
    if "ds" not in newest.partition_columns:
        raise DeltaLogError(f"{table_path}: not partitioned by ds; a snapshot of days reads per-day partitions")
    files = sorted((f for d, v in day_versions.items() for f in snaps[v].files if f.partition_values.get("ds") == d),
                   key=lambda f: f.path)
    return dataclasses.replace(newest, files=tuple(files), day_versions=dict(day_versions))


def training_snapshot(table_path: str, version: int | None = None) -> DeltaSnapshot:
    """What a training run reads. With ``version``: the table pinned at it, every day at that version. Without:
    every day the table's latest version holds, each as the last run that published it left it
    (:func:`published_snapshot`), so a build killed between its commit and its ledger row is not trained on."""
    if version is not None:
        snap = load_snapshot(table_path, version)
        days = sorted({f.partition_values["ds"] for f in snap.files if "ds" in f.partition_values})
        return dataclasses.replace(snap, day_versions={d: snap.version for d in days})
    days = {f.partition_values["ds"] for f in live_files(table_path) if "ds" in f.partition_values}
    return published_snapshot(table_path, days)
