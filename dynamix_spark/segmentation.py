"""User segmentation by thresholding |corr| (DynamiX eq. 9), with the epsilon chosen by one of four modes.

- ``fixed``: epsilon from conf;
- ``target_active_fraction``: epsilon is the (1 - f) quantile of |corr| over the day's user windows with a
  non-null corr, so that a share f is active (the paper's empirical 2/3);
- ``auto``: from a grid, the epsilon that maximizes the NE gap between segments of the per-user Bayes
  predictor sigmoid(-w ln D + b) (eq. 6) fitted on one window and scored on the user's next window
  (NE as in eq. 10): the paper picks epsilon "to maximize the NE gains between two user-segments";
- ``multi_level``: thresholds t_1 < ... < t_k give ordered segments 0..k (passive / average / power).
Windows with a null corr get ``null_corr_segment``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from dynamix_spark.config import SegmentationConfig

# Probabilities are clipped away from 0 and 1 before the log loss, as in any NE computation.
_P_CLIP = 1e-7
# A candidate epsilon in auto mode must leave at least this share of scored windows in each segment.
AUTO_MIN_SEGMENT_SHARE = 0.05


@dataclass(frozen=True)
class EpsilonChoice:
    epsilon: float
    mode: str
    thresholds: tuple[float, ...]
    detail: dict


def allowed_segments(cfg: SegmentationConfig) -> tuple[int, ...]:
    """Segment values eq. 9 can give: 0/1, or 0..k with k thresholds in ``multi_level`` mode."""
    if cfg.epsilon_mode == "multi_level":
        return tuple(range(len(cfg.thresholds) + 1))
    return (0, 1)


def binary_entropy(p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def next_window_log_loss(stats: DataFrame, labelled: DataFrame, window_length_s: int) -> DataFrame:
    """Per (user, window): log loss sums of the window's Bayes predictor on the user's NEXT window.

    ``labelled`` has one row per impression (user_id, event_ts, dwell_ms, label); columns out: user_id,
    window_start, ll_sum, n_scored, n_scored_pos.
    """
    s = F.unix_seconds("event_ts")
    imp = labelled.select(
        "user_id",
        F.timestamp_seconds(s - F.pmod(s, F.lit(window_length_s)) - window_length_s).alias("window_start"),
        F.log(F.col("dwell_ms").cast("double")).alias("x"),
        "label",
    )
    params = stats.where(F.col("bayes_w").isNotNull()).select("user_id", "window_start", "bayes_w", "bayes_b")
    p = 1.0 / (1.0 + F.exp(-(-F.col("bayes_w") * F.col("x") + F.col("bayes_b"))))
    p = F.least(F.greatest(p, F.lit(_P_CLIP)), F.lit(1 - _P_CLIP))
    ll = -(F.col("label") * F.log(p) + (1 - F.col("label")) * F.log(1 - p))
    return imp.join(params, ["user_id", "window_start"]).groupBy("user_id", "window_start").agg(
        F.sum(ll).alias("ll_sum"), F.count("*").alias("n_scored"), F.sum("label").alias("n_scored_pos"))


def segment_ne_gaps(stats: DataFrame, labelled: DataFrame, epsilons, window_length_s: int) -> dict[float, dict]:
    """For each epsilon: the segments' NE of the per-user Bayes predictor scored on the next window (eq. 6, NE
    as in eq. 10), {eps: {seg: {"ll", "n", "npos", "windows"}}} (a segment without windows is absent).

    One Spark job for all epsilons: the scored windows cross-joined with the (small) list of epsilons."""
    scored = next_window_log_loss(stats, labelled, window_length_s).join(
        stats.select("user_id", "window_start", F.abs("corr").alias("abs_corr")), ["user_id", "window_start"])
    grid = scored.sparkSession.createDataFrame([(float(e),) for e in epsilons], "eps double")
    rows = (scored.crossJoin(F.broadcast(grid))  # a grid of a few epsilons, not a join on events
            .groupBy("eps", (F.col("abs_corr") > F.col("eps")).cast("int").alias("seg"))
            .agg(F.sum("ll_sum").alias("ll"), F.sum("n_scored").alias("n"), F.sum("n_scored_pos").alias("npos"),
                 F.count("*").alias("windows"))
            .collect())
    by_eps: dict[float, dict[int, dict]] = {float(e): {} for e in epsilons}
    for r in rows:
        by_eps[r["eps"]][r["seg"]] = {"ll": r["ll"], "n": r["n"], "npos": r["npos"], "windows": r["windows"]}
    return by_eps


def _segment_ne(v: dict) -> float:
    h = binary_entropy(v["npos"] / v["n"])
    return (v["ll"] / v["n"]) / h if h > 0 else float("inf")


def auto_epsilon(stats: DataFrame, labelled: DataFrame, cfg: SegmentationConfig, window_length_s: int) -> tuple[float, dict]:
    """Grid search of epsilon maximizing NE(passive) - NE(active) on next-window scoring."""
    by_eps = segment_ne_gaps(stats, labelled, cfg.auto_grid, window_length_s)
    total_windows = sum(v["windows"] for segs in by_eps.values() for v in segs.values()) / max(len(cfg.auto_grid), 1)
    candidates = {}
    for eps, segs in sorted(by_eps.items()):
        if 0 not in segs or 1 not in segs:
            continue
        if min(segs[0]["windows"], segs[1]["windows"]) < AUTO_MIN_SEGMENT_SHARE * total_windows:
            continue
        ne = {k: _segment_ne(v) for k, v in segs.items()}
        candidates[eps] = {"ne_passive": ne[0], "ne_active": ne[1], "gap": ne[0] - ne[1]}
    if not candidates:
        raise ValueError("auto epsilon: no grid value leaves both segments with scored windows; "
                         "widen segmentation.auto_grid or use another epsilon_mode")
    best = max(candidates, key=lambda e: (candidates[e]["gap"], -e))
    return float(best), {"grid": {str(k): v for k, v in candidates.items()}}


def describe_gap(segs: dict[int, dict]) -> dict:
    """The NE of each segment, their gap (passive - active, positive when the active segment's history
    predicts better) and the windows in each, from one epsilon's entry of :func:`segment_ne_gaps`."""
    ne = {k: _segment_ne(v) for k, v in segs.items()}
    out = {"windows_passive": segs.get(0, {}).get("windows", 0), "windows_active": segs.get(1, {}).get("windows", 0),
           "ne_passive": ne.get(0), "ne_active": ne.get(1)}
    out["gap"] = ne[0] - ne[1] if 0 in ne and 1 in ne else None
    return out


def choose_epsilon(stats: DataFrame, labelled: DataFrame | None, cfg: SegmentationConfig,
                   window_length_s: int) -> EpsilonChoice:
    mode = cfg.epsilon_mode
    if mode == "fixed":
        return EpsilonChoice(cfg.epsilon, mode, (cfg.epsilon,), {})
    if mode == "multi_level":
        return EpsilonChoice(cfg.thresholds[0], mode, cfg.thresholds, {})
    if mode == "target_active_fraction":
        q = 1.0 - cfg.target_active_fraction
        eps = stats.where(F.col("corr").isNotNull()).agg(
            F.percentile_approx(F.abs("corr"), q, 100_000)).first()[0]
        eps = float(eps) if eps is not None else 0.0
        return EpsilonChoice(eps, mode, (eps,), {"quantile": q})
    if mode == "auto":
        if labelled is None:
            raise ValueError("auto epsilon needs the labelled impressions")
        eps, detail = auto_epsilon(stats, labelled, cfg, window_length_s)
        return EpsilonChoice(eps, mode, (eps,), detail)
    raise ValueError(f"unknown epsilon_mode {mode!r}")


def segment_column(choice: EpsilonChoice, null_corr_segment: int) -> Column:
    """Eq. 9: 1 if |corr| > epsilon else 0 (multi_level: how many thresholds |corr| exceeds)."""
    abs_corr = F.abs(F.col("corr"))
    seg = F.lit(0)
    for t in choice.thresholds:
        seg = seg + F.when(abs_corr > F.lit(t), 1).otherwise(0)
    return F.when(F.col("corr").isNull(), F.lit(null_corr_segment)).otherwise(seg).cast("int")


def segment(stats: DataFrame, choice: EpsilonChoice, null_corr_segment: int) -> DataFrame:
    return (stats.withColumn("segment", segment_column(choice, null_corr_segment))
            .withColumn("epsilon", F.lit(float(choice.epsilon)))
            .withColumn("epsilon_mode", F.lit(choice.mode)))
