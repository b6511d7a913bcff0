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


def test_segment_ne_gaps_by_hand(spark):
    """Two users, one window each, scored on their next window: NE per segment worked out by hand."""
    W = 21_600
    # user 0: |corr| 0.9, predictor p = sigmoid(b) = 0.8 for every impression (w = 0); next window: 4 impressions,
    # labels 1,1,1,0. user 1: |corr| 0.2, p = 0.5; next window: labels 1,0.
    stats = spark.createDataFrame([(0, W0, 0.9, 0.0, math.log(4.0)), (1, W0, -0.2, 0.0, 0.0)],
                                  "user_id long, window_start timestamp, corr double, bayes_w double, bayes_b double")
    imps = spark.createDataFrame(
        [(0, W0 + dt.timedelta(seconds=W + 60 * k), 1000, y) for k, y in enumerate((1, 1, 1, 0))]
        + [(1, W0 + dt.timedelta(seconds=W + 60 * k), 1000, y) for k, y in enumerate((1, 0))],
        "user_id long, event_ts timestamp, dwell_ms long, label int")
    from dynamix_spark.segmentation import describe_gap, segment_ne_gaps

    gaps = segment_ne_gaps(stats, imps, [0.5, 0.1, 1.0], W)
    at = describe_gap(gaps[0.5])
    ne_active = (-(3 * math.log(0.8) + math.log(0.2)) / 4) / binary_entropy(0.75)
    ne_passive = (-(math.log(0.5) + math.log(0.5)) / 2) / binary_entropy(0.5)
    assert at["windows_active"] == 1 and at["windows_passive"] == 1
    assert at["ne_active"] == pytest.approx(ne_active, rel=1e-9)
    assert at["ne_passive"] == pytest.approx(ne_passive, rel=1e-9)
    assert at["gap"] == pytest.approx(ne_passive - ne_active, rel=1e-9)
    assert describe_gap(gaps[0.1])["windows_passive"] == 0 and describe_gap(gaps[0.1])["gap"] is None
    assert describe_gap(gaps[1.0])["windows_active"] == 0


def test_compare_epsilon_job(spark, tiny_cfg, tiny_pipeline):
    """jobs/compare_epsilon.py on a generated day: the configured mode's epsilon is the one the stats job
    wrote for the day, the auto mode's is the grid maximum, and the shares add up."""
    from jobs import compare_epsilon

    res = compare_epsilon.run(spark, tiny_cfg, MID_DS)
    written = (spark.read.format("delta").load(f"{tiny_cfg.paths.lake_root}/user_window_stats")
               .where(F.col("ds") == MID_DS).select("epsilon").first()[0])
    conf, auto = res["modes"]["configured"], res["modes"]["auto"]
    assert conf["epsilon_mode"] == tiny_cfg.segmentation.epsilon_mode
    assert conf["epsilon"] == pytest.approx(written)
    assert auto["epsilon_mode"] == "auto" and auto["epsilon"] in tiny_cfg.segmentation.auto_grid
    for m in (conf, auto):
        n = m["windows_active"] + m["windows_passive"]
        assert n > 0 and m["active_share_scored"] == pytest.approx(m["windows_active"] / n)
        if m["gap"] is not None:
            assert m["gap"] == pytest.approx(m["ne_passive"] - m["ne_active"])
    # the auto mode's gap is the one its own grid search saw for that epsilon
    grid = compare_epsilon.choose_epsilon(
        compare_epsilon.window_stats(compare_epsilon.label_impressions(*compare_epsilon.read_inputs(
            spark, tiny_cfg, MID_DS)[:2], tiny_cfg.stats), tiny_cfg.stats),
        compare_epsilon.label_impressions(*compare_epsilon.read_inputs(spark, tiny_cfg, MID_DS)[:2], tiny_cfg.stats),
        SegmentationConfig(epsilon_mode="auto"), tiny_cfg.stats.window_length_s).detail["grid"]
    assert auto["gap"] == pytest.approx(grid[str(auto["epsilon"])]["gap"], rel=1e-9)
