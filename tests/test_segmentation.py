"""Segmentation (eq. 9) and the epsilon modes, on small stats tables with segments worked out by hand."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import functions as F

from conftest import MID_DS
from dynamix_spark.config import SegmentationConfig
from dynamix_spark.segmentation import binary_entropy, choose_epsilon, segment

W0 = dt.datetime(2026, 11, 2, 0, 0)


def _stats(spark, corrs):
    rows = [(i, W0, c, None, None) for i, c in enumerate(corrs)]
    return spark.createDataFrame(rows, "user_id long, window_start timestamp, corr double, bayes_w double, bayes_b double")


def _segments(spark, corrs, cfg):
    stats = _stats(spark, corrs)
    choice = choose_epsilon(stats, None, cfg, 21_600)
    out = segment(stats, choice, cfg.null_corr_segment)
    return choice, [r["segment"] for r in out.orderBy("user_id").collect()]


def test_fixed_threshold_is_strict(spark):
    cfg = SegmentationConfig(epsilon_mode="fixed", epsilon=0.3)
    choice, seg = _segments(spark, [0.1, -0.3, 0.30001, -0.9, None, 0.0], cfg)
    assert choice.epsilon == 0.3
    assert seg == [0, 0, 1, 1, 0, 0]  # |corr| = eps is passive (eq. 9: <= eps)


def test_null_corr_default(spark):
    cfg = SegmentationConfig(epsilon_mode="fixed", epsilon=0.3, null_corr_segment=1)
    assert _segments(spark, [None, 0.1], cfg)[1] == [1, 0]


def test_target_active_fraction(spark):
    corrs = [(-1) ** i * (i + 1) / 100 for i in range(300)] + [None] * 50  # |corr| = 0.01 .. 3.00
    cfg = SegmentationConfig(epsilon_mode="target_active_fraction", target_active_fraction=0.6667)
    choice, seg = _segments(spark, corrs, cfg)
    active = sum(seg[:300]) / 300
    assert active == pytest.approx(2 / 3, abs=0.01)
    assert choice.epsilon == pytest.approx(1.0, abs=0.02)  # the 1/3 quantile of 0.01..3.00
    assert sum(seg[300:]) == 0


def test_multi_level(spark):
    cfg = SegmentationConfig(epsilon_mode="multi_level", thresholds=(0.3, 0.8))
    _, seg = _segments(spark, [0.1, -0.5, 0.8, 0.81, -2.0, None], cfg)
    assert seg == [0, 1, 1, 2, 2, 0]


def test_auto_epsilon_maximizes_ne_gap(spark):
    """Users whose |corr| is large have a Bayes predictor that scores their next window well; users with
    small |corr| have one that scores it badly. The best grid epsilon separates the two groups."""
    rows_stats, rows_imps = [], []
    W = 21_600
    for u in range(40):
        strong = u < 20
        corr = 0.9 if strong else 0.1 + 0.01 * u  # weak users: 0.10 .. 0.49
        # predictor sigma(-w x + b): strong users predict p = 0.9 for x = 9, 0.1 for x = 7
        w, b = (-math.log(81) / 2, -8 * math.log(81) / 2) if strong else (0.0, 0.0)
        rows_stats.append((u, W0, corr, w, b))
        for k in range(20):
            y = k % 2
            x = (9.0 if y else 7.0) if strong else (7.0 if y else 9.0)  # weak: pattern flips next window
            rows_imps.append((u, W0 + dt.timedelta(seconds=W + 60 * k), int(round(math.exp(x))), y))
    stats = spark.createDataFrame(rows_stats, "user_id long, window_start timestamp, corr double, bayes_w double, bayes_b double")
    imps = spark.createDataFrame(rows_imps, "user_id long, event_ts timestamp, dwell_ms long, label int")
    cfg = SegmentationConfig(epsilon_mode="auto", auto_grid=(0.05, 0.3, 0.5, 0.7))
    choice = choose_epsilon(stats, imps, cfg, W)
    # 0.05 leaves no passive window (skipped); 0.3 puts weak users into the active segment; 0.5 and 0.7
    # both separate the groups exactly, and a tie goes to the smaller epsilon.
    assert choice.epsilon == 0.5
    grid = choice.detail["grid"]
    assert grid["0.5"]["ne_active"] < 0.5 < grid["0.5"]["ne_passive"]
    # NE by hand for the active segment: every impression has p = 0.9 on the right side
    assert grid["0.5"]["ne_active"] == pytest.approx(-math.log(0.9) / binary_entropy(0.5), rel=1e-3)


def test_auto_on_generated_data(spark, tiny_cfg, tiny_pipeline):
    from dynamix_spark.window_stats import label_impressions
    from jobs.user_window_stats import read_inputs

    imps, conv, _ = read_inputs(spark, tiny_cfg, MID_DS)
    labelled = label_impressions(imps, conv, tiny_cfg.stats)
    stats = spark.read.format("delta").load(f"{tiny_cfg.paths.lake_root}/user_window_stats").where(F.col("ds") == MID_DS)
    choice = choose_epsilon(stats, labelled, SegmentationConfig(epsilon_mode="auto"), tiny_cfg.stats.window_length_s)
    best = choice.detail["grid"][str(choice.epsilon)]
    assert best["ne_active"] < best["ne_passive"]
