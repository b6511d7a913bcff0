"""YAML configuration loaded into frozen dataclasses and validated before any Spark work.

An unknown key, a value of the wrong type or a value out of range raises ``ConfigError`` naming the key
(``stats.forecast_horizon_s``), so a bad night fails at start-up, not an hour into the run.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from schemas.names import Severity


class ConfigError(ValueError):
    """A configuration key is unknown, missing, mistyped or out of range."""


@dataclass(frozen=True)
class PathsConfig:
    raw_root: str = "data/raw"  # <raw_root>/<source>/ds=YYYY-MM-DD/*.parquet
    lake_root: str = "data/lake"  # Delta tables, one folder per table
    truth_root: str = "data/truth"  # planted truth written by the generator
    database: str = "dynamix"  # catalog database the tables are registered in
    # A raw partition is complete once the landing job has written this file into it, after its last data
    # file (Hadoop's _SUCCESS convention). A partition without it fails the run as incomplete before anything
    # is written; "" accepts a partition as soon as its folder exists.
    raw_ready_marker: str = "_SUCCESS"
    # Sources a day cannot run without: a missing partition of one fails the day before anything is written.
    # The others are optional (not every ads stack logs organic or page impressions): a day whose partition of
    # an optional source is absent (no folder) or empty (0 rows) completes, with length-0 sequences for that
    # source and a warning in quality_results and run_metrics. ad_impressions and conversions must be listed
    # (the statistics and the examples are made of them); a folder that exists is read, required or not, and
    # must carry raw_ready_marker.
    required_sources: tuple[str, ...] = ("ad_impressions", "conversions")


@dataclass(frozen=True)
class SparkConfig:
    app_name: str = "dynamix"
    # Passed to SparkSession.builder.config(); never the master (spark-submit owns it).
    conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorConfig:
    start_date: str = "2026-11-01"
    days: int = 3
    n_users: int = 4000
    seed: int = 7
    ad_impressions_per_user_day: float = 40.0  # median user's background ad impressions a day
    conversions_per_user_day: float = 2.0  # median user's conversions a day
    burst_impressions_per_conversion: float = 4.0  # ad impressions in the minutes before a conversion
    organic_per_user_day: float = 30.0
    pages_per_user_day: float = 6.0
    activity_sigma: float = 1.0  # log-normal spread of per-user activity
    power_user_share: float = 0.002  # users with power_user_multiplier x the median activity
    power_user_multiplier: float = 100.0
    planted_dwell_shift: float = 0.8  # shift of log dwell (ln ms) before conversions, +/- by type
    log_dwell_mean: float = 8.0  # ln(ms): about 3 s
    log_dwell_std: float = 0.6
    pre_logged_conversion_share: float = 0.3  # conversions logged before their own impression
    max_logging_delay_s: int = 60
    duplicate_share: float = 0.01
    dwell_noise_share: float = 0.02  # half implausibly short (ms), half implausibly long (hours)
    malformed_share: float = 0.002
    n_ads: int = 20000
    n_categories: int = 50
    files_per_partition: int = 4
    # Organic content and page ids are 1000 x category + item, item < this (<= 1000): a catalog small enough
    # that ids repeat across users, so a hashed-id embedding can learn the category they carry.
    catalog_items_per_category: int = 100
    # A window's engagement type is the user's own (one draw per user) with this probability, else drawn for
    # the window: the segment of the previous window then predicts the current window's type (0: independent).
    engagement_persistence: float = 0.8
    # The planted mechanism (docs/PLANTED_MECHANISM.md). Per user and 6-hour window an
    # interest category; active windows are the positive/negative engagement types, passive the low ones.
    interest_view_share: float = 0.6  # organic and page impressions showing the window's interest category
    interest_conversion_share_active: float = 0.5  # conversions on an ad of the interest category (extra sources)
    interest_conversion_share_passive: float = 0.05
    preferred_conversion_share_active: float = 0.3  # conversions on the preferred category (the ad history)
    preferred_conversion_share_passive: float = 0.05
    # The null control: every conversion share above is 0, so which ad a user converts on is a draw like the
    # ads they are shown, independent of their organic, page and ad history. Views, engagement types and the
    # dwell shift (what the segmentation reads) are unchanged.
    null_control: bool = False


DwellUpperMode = Literal["fixed", "surface_quantile", "user_robust"]


@dataclass(frozen=True)
class DenoiseConfig:
    # Below 250 ms an impression is not a valid impression (the EBF definition, DynamiX 3.3).
    min_dwell_ms: int = 250
    # Default upper bound: a fixed 10 minutes. A quantile bound always cuts the same share even on a
    # clean night and moves with the traffic mix, which makes the drop metric useless as an alarm; a
    # fixed bound is reconcilable and explainable. The other modes are there for surfaces with very
    # different dwell scales.
    upper_mode: DwellUpperMode = "fixed"
    max_dwell_ms: int = 600_000
    surface_quantile: float = 0.999
    user_mad_k: float = 5.0  # user_robust: median + k * 1.4826 * MAD of ln(dwell)
    user_min_events: int = 20  # user_robust: fewer events than this fall back to max_dwell_ms
    # event_ts may lie this far outside the partition's UTC day (late/early logging) and still be clean.
    ts_tolerance_s: int = 3600


@dataclass(frozen=True)
class StatsConfig:
    window_length_s: int = 21_600  # tumbling windows aligned to UTC midnight (6 h)
    logging_buffer_s: int = 60  # b: conversions logged up to b s before their impression
    forecast_horizon_s: int = 300  # s in eq. 1
    min_count: int = 1  # corr is null when n_pos or n_neg is below this
    # Each user's events are processed in time buckets of this length so that a power user with
    # millions of events is spread over many window partitions instead of one.
    skew_bucket_s: int = 3600


EpsilonMode = Literal["fixed", "target_active_fraction", "auto", "multi_level"]


@dataclass(frozen=True)
class SegmentationConfig:
    epsilon_mode: EpsilonMode = "target_active_fraction"
    epsilon: float = 0.3  # fixed mode
    target_active_fraction: float = 0.6667  # the paper's empirical split
    auto_grid: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    thresholds: tuple[float, ...] = (0.3, 0.8)  # multi_level: passive / average / power
    null_corr_segment: int = 0  # no evidence that ad history predicts intent -> passive


@dataclass(frozen=True)
class PolicySpec:
    """Which EBF sources each segment class gets ("ad", "ad_reduced", "organic", "page")."""
    passive: tuple[str, ...] = ("ad",)  # segment 0
    active: tuple[str, ...] = ("ad",)  # segment >= 1 (every non-passive level in multi_level)


def _default_policies() -> Mapping[str, PolicySpec]:
    # DynamiX Table 2 (removal) and Table 3 (boosting).
    return types.MappingProxyType({
        "baseline": PolicySpec(("ad",), ("ad",)),
        "remove_passive": PolicySpec(("ad_reduced",), ("ad",)),
        "remove_active": PolicySpec(("ad",), ("ad_reduced",)),
        "boost_all": PolicySpec(("ad", "organic", "page"), ("ad", "organic", "page")),
        "boost_active": PolicySpec(("ad", "organic"), ("ad", "organic", "page")),
    })


@dataclass(frozen=True)
class EbfConfig:
    seq_len: Mapping[str, int] = field(default_factory=lambda: types.MappingProxyType(
        {"ad": 32, "organic": 32, "page": 32}))
    # Label: a conversion on the same ad_id in [t - logging_buffer_s, t + label_horizon_s].
    label_horizon_s: int = 3600
    # Days of clean events (and segments) before ds that feed the sequences and the as-of segment.
    lookback_days: int = 2
    # The paper's 4 low-importance ad attributes (Table 2), removed for one segment by remove_*.
    low_importance_attributes: tuple[str, ...] = ("surface", "media_type", "position", "device_type")
    policies: Mapping[str, PolicySpec] = field(default_factory=_default_policies)
    build_policies: tuple[str, ...] = ("baseline", "remove_passive", "remove_active", "boost_all", "boost_active")
    eval_days: int = 1  # time-based split: the last eval_days of ds are the evaluation set


Variant = Literal["xdeepint", "da", "dgp", "dwp"]


@dataclass(frozen=True)
class ModelConfig:
    variant: Variant = "dwp"
    embed_dim: int = 16
    num_layers: int = 2  # PIN depth
    subspaces: int = 2  # h: subspace crossing
    rank: int = 4  # K pairs (DWP) / rank (DGP)
    reduction: int = 4  # r of the DA gate network
    orth_rate: float = 1e-4  # eqs. 11-12
    hash_buckets: int = 100_003  # rows of each id embedding table (ids are taken mod this)
    pooling: Literal["mean", "attention"] = "mean"
    # Per-row L2 on the embeddings a batch looks up (targets and the valid sequence positions): this rate
    # times the batch mean of their summed squares is added to the loss. Off by default (docs/TRAINING.md).
    embed_l2: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    policy: str = "baseline"
    batch_size: int = 1024
    lr: float = 1e-3
    epochs: int = 1
    max_steps: int = 0  # 0: no cap
    # Days trained on: 0 = every day before the evaluation day(s); N = the last N of them (the most recent,
    # whose EBF sequences have the whole lookback behind them).
    train_days: int = 0
    seed: int = 0
    workers: int = 2  # Petastorm reader workers
    shuffle_buffer: int = 8192
    eval_every: int = 100
    # The periodic evaluations (the NE curve) score the first N evaluation batches (segments interleaved by
    # the seeded schedule: the same rows per segment for every policy of a seed, not the same rows); 0: all.
    eval_max_batches: int = 0
    # The same for the final evaluation (the report's NE, AUC, log loss, inference samples/s); 0: every row.
    final_eval_max_batches: int = 0
    checkpoint_every: int = 200
    early_stopping_patience: int = 3
    # The sanity baseline beside DynInt in every report (training/baseline.py): a logistic regression on the
    # target features, fitted on the rows DynInt trained on (at most logreg_max_rows) with this L2.
    logreg_baseline: bool = True
    logreg_l2: float = 1e-4
    logreg_max_rows: int = 2_000_000
    out_dir: str = "data/runs"


@dataclass(frozen=True)
class QualityConfig:
    """Quality gates (``dynamix_spark.quality``; the suites are in ``schemas/expectations.py``)."""
    # user_window_stats: the active share of windows with a corr must lie in
    # segmentation.target_active_fraction +/- this (critical in target_active_fraction mode, else a warning).
    active_share_tolerance: float = 0.05
    # Day-over-day drift against the previous ds partition: shares and rates (active share, positive
    # rate) may move this much (absolute), means of ln(dwell ms) this many nats, row counts this fraction.
    drift_share_tolerance: float = 0.05
    drift_log_dwell_tolerance: float = 0.25
    drift_row_count_tolerance: float = 0.5
    drift_severity: Severity = "warning"
    # Raw sources: a share of rows above this with a null key or an event_ts off the day is a warning.
    raw_max_invalid_share: float = 0.05
    docs_dir: str = "data/quality_docs"  # GX Data Docs HTML (driver-local folder); "" renders none


# Delta refuses VACUUM below a table's delta.deletedFileRetentionDuration (default 7 days) unless its safety
# check is switched off; the maintenance settings never go below it.
DELTA_MIN_RETENTION_HOURS = 168


@dataclass(frozen=True)
class MaintenanceConfig:
    """Delta table maintenance at the end of a nightly run (``dynamix_spark.maintenance``, docs/OPERATIONS.md)."""
    # VACUUM deletes the files that no version younger than this still needs, so time travel (VERSION AS
    # OF, the training loader's pinned snapshot) works back this far and no further. Keep it >= the longest
    # span over which a training run, an experiment or a backfill re-reads a pinned version.
    vacuum_retention_hours: int = 168
    optimize: bool = True
    vacuum: bool = True
    # Tables whose run partitions are compacted and Z-ordered by zorder_by: the ones read per user (lookups,
    # joins on user_id). Every other Delta table in the lake (ebf_examples, quarantine, run_metrics, ...) is
    # only compacted (bin-packing).
    zorder_tables: tuple[str, ...] = ("user_window_stats", "user_segments", "clean_ad_impressions",
                                      "clean_conversions", "clean_organic_impressions", "clean_page_impressions")
    zorder_by: tuple[str, ...] = ("user_id",)
    register_catalog: bool = True  # register every lake table in paths.database afterwards


@dataclass(frozen=True)
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    ebf: EbfConfig = field(default_factory=EbfConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)

    def validate(self) -> "Config":
        _check_ranges(self)
        return self


def _check_ranges(c: Config) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {msg}")

    from schemas.names import RAW_SOURCE_NAMES, STATISTICS_SOURCES

    req = c.paths.required_sources
    unknown = [x for x in req if x not in RAW_SOURCE_NAMES]
    need(not unknown, "paths.required_sources", f"unknown sources {unknown} (known: {list(RAW_SOURCE_NAMES)})")
    need(len(set(req)) == len(req), "paths.required_sources", f"lists a source twice: {list(req)}")
    absent = [x for x in STATISTICS_SOURCES if x not in req]
    need(not absent, "paths.required_sources", f"must include {list(STATISTICS_SOURCES)} (the statistics and the "
         f"examples are made of them); missing {absent}")
    try:
        dt.date.fromisoformat(c.generator.start_date)
    except ValueError:
        raise ConfigError(f"generator.start_date: not a YYYY-MM-DD date: {c.generator.start_date!r}")
    need(c.generator.days >= 1, "generator.days", "must be >= 1")
    need(c.generator.n_users >= 1, "generator.n_users", "must be >= 1")
    for name in ("duplicate_share", "dwell_noise_share", "malformed_share", "pre_logged_conversion_share",
                 "power_user_share"):
        v = getattr(c.generator, name)
        need(0.0 <= v < 1.0, f"generator.{name}", f"must be in [0, 1), got {v}")
    need(c.generator.n_categories >= 2, "generator.n_categories", f"must be >= 2, got {c.generator.n_categories}")
    need(1 <= c.generator.catalog_items_per_category <= 1000, "generator.catalog_items_per_category",
         f"must be in [1, 1000] (ids are 1000 x category + item), got {c.generator.catalog_items_per_category}")
    for name in ("engagement_persistence", "interest_view_share", "interest_conversion_share_active",
                 "interest_conversion_share_passive", "preferred_conversion_share_active",
                 "preferred_conversion_share_passive"):
        v = getattr(c.generator, name)
        need(0.0 <= v <= 1.0, f"generator.{name}", f"must be in [0, 1], got {v}")
    for cls in ("active", "passive"):
        both = (getattr(c.generator, f"interest_conversion_share_{cls}")
                + getattr(c.generator, f"preferred_conversion_share_{cls}"))
        need(both <= 1.0, f"generator.preferred_conversion_share_{cls}",
             f"interest_conversion_share_{cls} + preferred_conversion_share_{cls} must be <= 1, got {both}")
    need(c.denoise.min_dwell_ms >= 0, "denoise.min_dwell_ms", "must be >= 0")
    need(c.denoise.max_dwell_ms > c.denoise.min_dwell_ms, "denoise.max_dwell_ms", "must exceed min_dwell_ms")
    need(0.5 < c.denoise.surface_quantile < 1.0, "denoise.surface_quantile", "must be in (0.5, 1)")
    need(c.denoise.ts_tolerance_s >= 0, "denoise.ts_tolerance_s", "must be >= 0")
    s = c.stats
    need(s.window_length_s > 0 and 86_400 % s.window_length_s == 0, "stats.window_length_s",
         f"must divide a day (86400 s) so windows align to UTC midnight, got {s.window_length_s}")
    need(s.logging_buffer_s >= 0, "stats.logging_buffer_s", "must be >= 0")
    need(s.forecast_horizon_s > 0, "stats.forecast_horizon_s", "must be > 0")
    need(s.window_length_s >= s.forecast_horizon_s, "stats.window_length_s",
         f"a window ({s.window_length_s} s) shorter than the forecast horizon ({s.forecast_horizon_s} s)"
         " cannot hold a labelled impression")
    need(s.min_count >= 1, "stats.min_count", "must be >= 1")
    need(s.skew_bucket_s > 0 and s.window_length_s % s.skew_bucket_s == 0, "stats.skew_bucket_s",
         f"must be > 0 and divide stats.window_length_s ({s.window_length_s}), got {s.skew_bucket_s}")
    g = c.segmentation
    need(g.epsilon >= 0, "segmentation.epsilon", f"must be >= 0, got {g.epsilon}")
    need(0.0 < g.target_active_fraction < 1.0, "segmentation.target_active_fraction",
         f"must be in (0, 1), got {g.target_active_fraction}")
    need(len(g.auto_grid) > 0 and all(e >= 0 for e in g.auto_grid), "segmentation.auto_grid",
         "must be a non-empty list of epsilons >= 0")
    need(len(g.thresholds) > 0 and list(g.thresholds) == sorted(set(g.thresholds))
         and all(t >= 0 for t in g.thresholds), "segmentation.thresholds",
         "must be a strictly increasing list of values >= 0")
    need(g.null_corr_segment in (0, 1), "segmentation.null_corr_segment", "must be 0 or 1")
    e = c.ebf
    from schemas.ebf import EBF_SOURCES, POLICY_SOURCES

    need(set(e.seq_len) == set(EBF_SOURCES), "ebf.seq_len", f"needs exactly the sources {sorted(EBF_SOURCES)}")
    for src, n in e.seq_len.items():
        need(isinstance(n, int) and 1 <= n <= 1024, f"ebf.seq_len.{src}", f"must be an integer in [1, 1024], got {n!r}")
    need(e.label_horizon_s > 0, "ebf.label_horizon_s", "must be > 0")
    need(e.lookback_days >= 0, "ebf.lookback_days", "must be >= 0")
    bad = [a for a in e.low_importance_attributes if a not in EBF_SOURCES["ad"]]
    need(not bad, "ebf.low_importance_attributes", f"not ad EBF attributes: {bad}")
    for name, spec in e.policies.items():
        for cls in ("passive", "active"):
            srcs = getattr(spec, cls)
            unknown = [x for x in srcs if x not in POLICY_SOURCES]
            need(not unknown, f"ebf.policies.{name}.{cls}", f"unknown sources {unknown} (known: {list(POLICY_SOURCES)})")
    missing = [p for p in e.build_policies if p not in e.policies]
    need(not missing, "ebf.build_policies", f"not defined in ebf.policies: {missing}")
    need(e.eval_days >= 1, "ebf.eval_days", "must be >= 1")
    m = c.model
    for name in ("embed_dim", "num_layers", "subspaces", "rank", "reduction", "hash_buckets"):
        need(getattr(m, name) >= 1, f"model.{name}", "must be >= 1")
    need(m.embed_dim % m.subspaces == 0, "model.subspaces", f"must divide model.embed_dim ({m.embed_dim})")
    need(m.orth_rate >= 0, "model.orth_rate", "must be >= 0")
    need(m.embed_l2 >= 0, "model.embed_l2", "must be >= 0")
    t = c.train
    need(t.policy in e.policies, "train.policy", f"not defined in ebf.policies: {t.policy!r}")
    for name in ("batch_size", "epochs", "eval_every", "checkpoint_every", "early_stopping_patience"):
        need(getattr(t, name) >= 1, f"train.{name}", "must be >= 1")
    need(t.lr > 0, "train.lr", "must be > 0")
    need(t.logreg_l2 > 0, "train.logreg_l2", "must be > 0 (it makes the optimum unique)")
    need(t.logreg_max_rows >= 1, "train.logreg_max_rows", "must be >= 1")
    need(t.eval_max_batches >= 0, "train.eval_max_batches", "must be >= 0")
    need(t.train_days >= 0, "train.train_days", "must be >= 0 (0: every day before the evaluation days)")
    need(t.final_eval_max_batches >= 0, "train.final_eval_max_batches", "must be >= 0")
    need(t.max_steps >= 0 and t.workers >= 1 and t.shuffle_buffer >= 0, "train.max_steps",
         "max_steps >= 0, workers >= 1 and shuffle_buffer >= 0 required")
    q = c.quality
    for name in ("active_share_tolerance", "drift_share_tolerance", "raw_max_invalid_share"):
        v = getattr(q, name)
        need(0.0 <= v < 1.0, f"quality.{name}", f"must be in [0, 1), got {v}")
    for name in ("drift_log_dwell_tolerance", "drift_row_count_tolerance"):
        v = getattr(q, name)
        need(v >= 0.0, f"quality.{name}", f"must be >= 0, got {v}")
    mt = c.maintenance
    need(mt.vacuum_retention_hours >= DELTA_MIN_RETENTION_HOURS, "maintenance.vacuum_retention_hours",
         f"must be >= {DELTA_MIN_RETENTION_HOURS} (Delta's deleted-file retention floor; time travel to pinned "
         f"training versions needs at least that), got {mt.vacuum_retention_hours}")
    need(len(mt.zorder_by) > 0 and "ds" not in mt.zorder_by, "maintenance.zorder_by",
         "must name at least one column, and not the partition column ds")
    try:
        from schemas.tables import PIPELINE_TABLES
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "pyspark":
            raise
        # The training environment (no PySpark, README "Set-up") loads configs too; the tables' columns are
        # Spark schemas, and maintenance runs on the Spark side, whose start-up checks the two keys below.
        return

    for name in mt.zorder_tables:
        need(name in PIPELINE_TABLES, "maintenance.zorder_tables",
             f"unknown table {name!r} (known: {sorted(PIPELINE_TABLES)})")
        missing_cols = [col for col in mt.zorder_by if col not in PIPELINE_TABLES[name].fieldNames()]
        need(not missing_cols, "maintenance.zorder_tables", f"{name} has no column(s) {missing_cols}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        _k, val_tp = typing.get_args(tp)
        if val_tp is str:
            return types.MappingProxyType({str(k): str(v) for k, v in value.items()})
        return types.MappingProxyType({str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()})
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, dt.date):  # YAML reads an unquoted 2026-11-01 as a date
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
    node[parts[-1]] = value


def _merge(base: dict, over: Mapping[str, Any]) -> dict:
    """``over`` on top of ``base``: mappings merge key by key (recursively), anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _read_profile(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The YAML mapping of ``path``; a top-level ``extends: <file>`` (relative to ``path``'s folder) names a
    profile this one changes: that profile is read first and this one's keys merged on top (mappings key by
    key, so ``conf/local_shared.yaml`` names only the catalog settings it changes in ``conf/local.yaml``)."""
    if path.resolve() in chain:
        raise ConfigError(f"{path}: extends loop ({' -> '.join(str(p) for p in (*chain, path.resolve()))})")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = loaded.pop("extends", None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends must be a file name, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends {base!r}: no such file {base_path}")
    return _merge(_read_profile(base_path, (*chain, path.resolve())), loaded)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (YAML, optionally ``extends``-ing another profile) and ``KEY=VALUE`` overrides
    (``stats.forecast_horizon_s=600``) into a Config."""
    data: dict = {}
    if path is not None:
        data = _read_profile(Path(path))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        _set_dotted(data, k.strip(), yaml.safe_load(v))
    return _build(Config, data).validate()


def config_to_dict(cfg: Any) -> Any:
    """A plain-JSON view of a config (for run metrics and Delta commit info)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [config_to_dict(v) for v in cfg]
    return cfg
