"""Reading and checking a configuration: the rules behind ``dynamix_spark.config``'s dataclasses.

:func:`read_profile` reads a YAML profile (following ``extends``), :func:`set_dotted` applies a ``KEY=VALUE``
override, :func:`build_dataclass` turns a mapping into a frozen dataclass, value by value against the field's
type, and :func:`check_ranges` checks the values' ranges and their agreement with each other and with the
tables in ``schemas/``. Each raises :class:`ConfigError` naming the key (``stats.forecast_horizon_s``).
Nothing here imports the dataclasses: they are in ``dynamix_spark/config.py``, which imports this module.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown, missing, mistyped or out of range."""


# Delta refuses VACUUM below a table's delta.deletedFileRetentionDuration (default 7 days) unless its safety
# check is switched off; the maintenance settings never go below it.
DELTA_MIN_RETENTION_HOURS = 168


def check_ranges(c: Any) -> None:
    """Raise :class:`ConfigError` for the first value of ``c`` (a ``dynamix_spark.config.Config``) out of range."""
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
                 "preferred_conversion_share_passive", "reexposure_share_active", "reexposure_share_passive"):
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
        return build_dataclass(tp, value, key)
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


def build_dataclass(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
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


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
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


def read_profile(path: Path, chain: tuple[Path, ...] = ()) -> dict:
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
    return _merge(read_profile(base_path, (*chain, path.resolve())), loaded)
