"""YAML configuration loaded into frozen dataclasses and validated before any Spark work.

An unknown key, a value of the wrong type or a value out of range raises ``ConfigError`` naming the key
(``stats.forecast_horizon_s``), so a bad night fails at start-up, not an hour into the run.

The dataclasses (one per section of the YAML file) are here; reading a profile, coercing values and the range
checks are in ``dynamix_spark/config_loading.py`` (:class:`ConfigError` and ``DELTA_MIN_RETENTION_HOURS`` are
defined there and importable from here).
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from dynamix_spark.config_loading import (
    DELTA_MIN_RETENTION_HOURS,
    ConfigError,
    build_dataclass,
    check_ranges,
    read_profile,
    set_dotted,
)
from schemas.names import Severity

__all__ = [
    "DELTA_MIN_RETENTION_HOURS", "Config", "ConfigError", "DenoiseConfig", "DwellUpperMode", "EbfConfig",
    "EpsilonMode", "GeneratorConfig", "MaintenanceConfig", "ModelConfig", "PathsConfig", "PolicySpec",
    "QualityConfig", "SegmentationConfig", "SparkConfig", "StatsConfig", "TrainConfig", "Variant",
    "config_to_dict", "load_config",
]


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
    # Re-exposure (retargeting): this share of the ads shown in the minutes before a conversion is the converted ad,
    # or another ad of its campaign or advertiser, which only the ad history's ids reveal (generate.py).
    reexposure_share_active: float = 0.3
    reexposure_share_passive: float = 0.05
    # The null control: every conversion and re-exposure share above is 0, so which ad a user converts on is a draw
    # like the ads they are shown, independent of their organic, page and ad history; and the organic and page
    # sources are drawn for an independent copy of each user's activity and dwell scale (generate.py). Views,
    # engagement types and the ad dwell shift (what the segmentation reads) are unchanged.
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
    # Target-aware match fields: per source with a category_id sequence, the bucketed count of its events of the
    # target ad's category, as one more field each (training/model.py). Off here (the paper's model); conf sets it.
    target_match: bool = False
    # Target-aware id match fields: the bucketed count of the ad history's events showing the target ad, its campaign,
    # its advertiser, its content (semantic ids) (training/model.py): the re-exposure signal of retargeting. Off here;
    # conf sets it.
    id_match: bool = False
    # Per source, the bucketed sequence length as a field (training/model.py). Off, and off in conf: a diagnostic of
    # the removal arms' cost that did not remove it (docs/PLANTED_MECHANISM.md).
    length_fields: bool = False
    # A constant field: one learned [D] vector in every example's X_0 (training/model.py), the polynomial's "1", so
    # the PIN layers can form every lower-order term without borrowing a near-constant input field for it (removing
    # such a field for one segment then cost NE: docs/PLANTED_MECHANISM.md). Off here (the paper's model); conf sets it.
    bias_field: bool = False
    bias_fields: int = 1  # with bias_field: how many constant fields (each its own learned [D] vector)
    # A learned [R, d] term in every PIN layer's interaction, X_l = X_{l-1} o (W X_0 + B) + X_{l-1} (training/model.py):
    # a constant of its own for every row and dimension, where the constant field gives each row a combination of
    # only h = ``subspaces`` constant vectors. Off here (the paper's model); conf sets it (docs/PLANTED_MECHANISM.md).
    row_bias: bool = False


@dataclass(frozen=True)
class TrainConfig:
    policy: str = "baseline"
    batch_size: int = 1024
    lr: float = 1e-3
    # The learning rate over the run's planned steps (epochs x steps per epoch, capped by max_steps): constant;
    # linear, from lr at step 0 to 0 at the last step; cosine, half a cosine from lr to 0. A decay ends the run
    # converged at its planned length: with one epoch (the one-epoch phenomenon, training/train.py), the model
    # after its single pass over the rows, not one caught mid-descent.
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
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
        check_ranges(self)
        return self


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (YAML, optionally ``extends``-ing another profile) and ``KEY=VALUE`` overrides
    (``stats.forecast_horizon_s=600``) into a Config."""
    data: dict = {}
    if path is not None:
        data = read_profile(Path(path))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        set_dotted(data, k.strip(), yaml.safe_load(v))
    return build_dataclass(Config, data).validate()


def config_to_dict(cfg: Any) -> Any:
    """A plain-JSON view of a config (for run metrics and Delta commit info)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [config_to_dict(v) for v in cfg]
    return cfg
