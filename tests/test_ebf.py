"""EBF examples: a hand-built history with every expected value written out, policies, and a brute-force
check of the job's output on the generated dataset (pandas over the clean tables, scanning each user)."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F

from conftest import MID_DS
from dynamix_spark.config import EbfConfig, StatsConfig
from dynamix_spark.ebf import apply_policy, build_examples
from schemas.ebf import EBF_SOURCES, seq_col

T = dt.datetime
US = 1_000_000


def _us(ts: dt.datetime) -> int:
    return int(ts.replace(tzinfo=dt.timezone.utc).timestamp()) * US


def _ad(eid, ts, ad_id, dwell, user=1, position=3):
    return Row(event_id=eid, user_id=user, event_ts=ts, ad_id=ad_id, campaign_id=ad_id + 100,
               advertiser_id=ad_id + 200, category_id=7, semantic_ids=[1, 2], surface="feed", media_type="video",
               position=position, device_type="ios", dwell_ms=dwell)


ADS = [
    _ad("a1", T(2026, 11, 1, 23, 0, 0), 10, 400),
    _ad("a2", T(2026, 11, 2, 5, 59, 0), 10, 1000),
    _ad("a3", T(2026, 11, 2, 6, 0, 0), 11, 3000),
    _ad("a4", T(2026, 11, 2, 6, 0, 0), 12, 20000),
    _ad("a5", T(2026, 11, 2, 7, 0, 0), 10, 1000),
]
ORGANIC = [
    Row(event_id="o1", user_id=1, event_ts=T(2026, 11, 2, 5, 0, 0), content_id=5, dwell_ms=400, media_type="image", position=1),
    Row(event_id="o2", user_id=1, event_ts=T(2026, 11, 2, 6, 0, 0), content_id=6, dwell_ms=1000, media_type="image", position=2),
    Row(event_id="o3", user_id=1, event_ts=T(2026, 11, 2, 6, 30, 0), content_id=7, dwell_ms=3000, media_type="text", position=3),
]
SEGMENTS = [  # (window_end, segment)
    (T(2026, 11, 2, 0, 0, 0), 0),
    (T(2026, 11, 2, 6, 0, 0), 1),
    (T(2026, 11, 2, 12, 0, 0), 0),  # ends after every query: must never be used
]
CONVERSIONS = [  # (ad_id, event_ts)
    (10, T(2026, 11, 2, 6, 4, 0)),  # a2 (05:59) + 5 min: positive for a2; 56 min before a5: not for a5
    (12, T(2026, 11, 2, 5, 59, 30)),  # 30 s before a4 (06:00), inside the 60 s logging buffer: positive
    (None, T(2026, 11, 2, 6, 0, 0)),  # unattributed: labels nothing
]

# Dwell buckets 1 + floor(4 ln ms), worked out by hand: 400 -> 24, 1000 -> 28, 3000 -> 33, 20000 -> 40.
DWELL = {400: 24, 1000: 28, 3000: 33, 20000: 40}


def _age(seconds: int) -> int:
    return 1 + min(40, int(math.floor(math.log2(1 + seconds))))


@pytest.fixture(scope="module")
def hand_examples(spark):
    ads = spark.createDataFrame(ADS)
    queries = ads.where(F.to_date("event_ts") == F.lit("2026-11-02").cast("date"))
    organic = spark.createDataFrame(ORGANIC)
    page = spark.createDataFrame([], "event_id string, user_id long, event_ts timestamp, page_id long, "
                                     "semantic_ids array<long>, media_type string")
    segs = spark.createDataFrame([(1, e, s) for e, s in SEGMENTS], "user_id long, window_end timestamp, segment int")
    conv = spark.createDataFrame([(1, a, t) for a, t in CONVERSIONS], "user_id long, ad_id long, event_ts timestamp")
    cfg = EbfConfig(seq_len={"ad": 3, "organic": 2, "page": 2}, label_horizon_s=3600)
    ex = build_examples(queries, {"ad": ads, "organic": organic, "page": page}, segs, conv, StatsConfig(), cfg)
    rows = {r["event_ts_us"]: r.asDict() for r in ex.collect()}
    return ex, rows, cfg


def test_hand_built_sequences_labels_segments(hand_examples):
    ex, rows, _ = hand_examples
    assert ex.count() == 4  # a2..a5; a1 is the day before (an event, not an example)
    a2, a34, a5 = _us(T(2026, 11, 2, 5, 59)), _us(T(2026, 11, 2, 6)), _us(T(2026, 11, 2, 7))
    r2 = rows[a2]
    assert r2["label"] == 1 and r2["segment"] == 0
    assert r2["segment_window_end_us"] == _us(T(2026, 11, 2, 0))
    assert r2["ad_len"] == 1 and r2["ad_seq_dwell_ms"] == [DWELL[400], 0, 0]
    assert r2["ad_seq_event_ts"] == [_age(6 * 3600 + 59 * 60), 0, 0]
    assert r2["organic_len"] == 1 and r2["organic_seq_dwell_ms"] == [DWELL[400], 0]
    assert r2["organic_seq_event_ts"] == [_age(59 * 60), 0]
    assert r2["page_len"] == 0 and r2["page_seq_page_id"] == [0, 0]


def test_ties_at_t_are_excluded_and_window_ending_at_t_counts(spark, hand_examples):
    ex, _, _ = hand_examples
    both = ex.where(F.col("event_ts_us") == _us(T(2026, 11, 2, 6))).orderBy("label").collect()
    assert len(both) == 2  # a3 (ad 11, no conversion) and a4 (ad 12, conversion 30 s before)
    a3, a4 = both
    assert (a3["label"], a4["label"]) == (0, 1)
    for r in (a3, a4):
        # the other impression at exactly 06:00 is not in the history; a2 and a1 are, newest first
        assert r["ad_len"] == 2 and r["ad_seq_dwell_ms"] == [DWELL[1000], DWELL[400], 0]
        assert r["ad_seq_event_ts"] == [_age(60), _age(7 * 3600), 0]
        # o2 at exactly 06:00 excluded
        assert r["organic_len"] == 1 and r["organic_seq_dwell_ms"] == [DWELL[400], 0]
        # the window [00:00, 06:00) ends exactly at t: its segment (1) is used
        assert r["segment"] == 1 and r["segment_window_end_us"] == _us(T(2026, 11, 2, 6))
    ad_ids = spark.sql("SELECT CAST(pmod(xxhash64('ad_id', 10L), 2147483647) + 1 AS INT) AS h").first()["h"]
    assert a3["ad_seq_ad_id"][:2] == [ad_ids, ad_ids]  # a2 and a1 both show ad 10


def test_truncation_to_seq_len_and_no_future_segment(hand_examples):
    _, rows, _ = hand_examples
    r5 = rows[_us(T(2026, 11, 2, 7))]
    assert r5["label"] == 0  # the ad-10 conversion at 06:04 is 56 min before: outside [t - 60 s, t + 1 h]
    # 4 earlier ads, seq_len 3: a4, a3 (equal time, higher event_id first), a2
    assert r5["ad_len"] == 3 and r5["ad_seq_dwell_ms"] == [DWELL[20000], DWELL[3000], DWELL[1000]]
    assert r5["organic_len"] == 2 and r5["organic_seq_dwell_ms"] == [DWELL[3000], DWELL[1000]]
    # the window [06:00, 12:00) contains t and ends after it: never used (it would leak conversions)
    assert r5["segment"] == 1 and r5["segment_window_end_us"] == _us(T(2026, 11, 2, 6))


def test_policies_null_what_they_remove(hand_examples):
    ex, _, cfg = hand_examples
    low = set(cfg.low_importance_attributes)
    rp = {r["segment"]: r.asDict() for r in apply_policy(ex, "remove_passive", cfg).collect()}
    for a in EBF_SOURCES["ad"]:
        assert (rp[0][seq_col("ad", a)] is None) == (a in low), a  # passive loses the 4 attributes
        assert rp[1][seq_col("ad", a)] is not None, a  # active keeps all 11
    assert rp[0]["ad_len"] == 1
    base = {r["segment"]: r.asDict() for r in apply_policy(ex, "baseline", cfg).collect()}
    for seg in (0, 1):
        assert base[seg]["organic_seq_dwell_ms"] is None and base[seg]["organic_len"] == 0
        assert base[seg]["ad_seq_surface"] is not None
    ba = {r["segment"]: r.asDict() for r in apply_policy(ex, "boost_active", cfg).collect()}
    assert ba[0]["organic_seq_dwell_ms"] == [DWELL[400], 0] and ba[0]["page_seq_page_id"] is None
    assert ba[0]["page_len"] == 0
    assert ba[1]["page_seq_page_id"] == [0, 0] and ba[1]["organic_len"] >= 1
    assert all(r["policy"] == "boost_active" for r in apply_policy(ex, "boost_active", cfg).collect())


# ---- the job on the generated dataset, against a brute force written with pandas -----------------------

@pytest.fixture(scope="module")
def ebf_run(spark, tiny_cfg, tiny_pipeline):
    from jobs import build_ebf

    cfg = replace(tiny_cfg, ebf=replace(tiny_cfg.ebf, seq_len={"ad": 8, "organic": 4, "page": 4},
                                        build_policies=("baseline", "remove_passive", "boost_active")))
    report = build_ebf.run(spark, cfg, MID_DS)
    lake = cfg.paths.lake_root
    return cfg, report, lake


def _clean(spark, lake, table):
    return spark.read.format("delta").load(f"{lake}/{table}").toPandas()


def test_job_one_example_per_impression_per_policy(spark, ebf_run):
    cfg, report, lake = ebf_run
    imps = _clean(spark, lake, "clean_ad_impressions")
    n_day = int((imps["event_ts"].dt.strftime("%Y-%m-%d") == MID_DS).sum())
    ex = spark.read.format("delta").load(f"{lake}/ebf_examples").where(F.col("ds") == MID_DS)
    counts = {r["policy"]: r["count"] for r in ex.groupBy("policy").count().collect()}
    assert counts == {p: n_day for p in ("baseline", "remove_passive", "boost_active")}
    # the run is one commit whose metrics are in run_metrics
    rm = spark.read.format("delta").load(f"{lake}/run_metrics").where(
        (F.col("job") == "build_ebf") & (F.col("ds") == MID_DS)).collect()
    assert rm and rm[-1]["rows_in"] == n_day


def test_job_report_figures_equal_counts_of_the_written_table(spark, ebf_run):
    """The report's examples, positives, per-segment counts and largest user, against pandas counts of one
    policy's written partition (every policy holds every example once)."""
    _, report, lake = ebf_run
    ex = (spark.read.format("delta").load(f"{lake}/ebf_examples")
          .where((F.col("ds") == MID_DS) & (F.col("policy") == "baseline"))
          .select("user_id", "label", "segment").toPandas())
    assert report["examples"] == len(ex) > 0
    assert report["positives"] == int(ex["label"].sum())
    assert report["segments"] == {str(k): int(v) for k, v in ex["segment"].value_counts().items()}
    assert report["max_examples_per_user"] == int(ex["user_id"].value_counts().max())


def test_job_against_brute_force(spark, ebf_run):
    """Labels, ad/organic lengths and segments of every example, from pandas scans of the clean tables."""
    cfg, _, lake = ebf_run
    imps = _clean(spark, lake, "clean_ad_impressions")
    org = _clean(spark, lake, "clean_organic_impressions")
    conv = _clean(spark, lake, "clean_conversions")
    seg = _clean(spark, lake, "user_segments")
    ex = (spark.read.format("delta").load(f"{lake}/ebf_examples")
          .where((F.col("ds") == MID_DS) & (F.col("policy") == "boost_active"))
          .select("user_id", "event_ts_us", "label", "segment", "segment_window_end_us", "ad_len", "organic_len",
                  "ad_seq_dwell_ms").toPandas())
    to_us = lambda s: s.astype("datetime64[us]").astype("int64").to_numpy()  # noqa: E731
    day0 = _us(T(2026, 11, 2)) - cfg.ebf.lookback_days * 86400 * US
    b, h = cfg.stats.logging_buffer_s * US, cfg.ebf.label_horizon_s * US
    rng = np.random.default_rng(0)
    users = rng.choice(ex["user_id"].unique(), size=min(25, ex["user_id"].nunique()), replace=False)
    checked = 0
    for u in users:
        ui = imps[imps.user_id == u]
        ui_t = to_us(ui.event_ts)
        oi_t = to_us(org[org.user_id == u].event_ts)
        cu = conv[(conv.user_id == u) & conv.ad_id.notna()]
        su = seg[seg.user_id == u]
        su_end = to_us(su.window_end)
        for _, r in ex[ex.user_id == u].iterrows():
            t = r.event_ts_us
            # the example's own ad: the impressions of this user at t (there may be several)
            ads_at_t = set(ui.ad_id[ui_t == t])
            lab = [int(((to_us(cu.event_ts[cu.ad_id == a]) >= t - b) & (to_us(cu.event_ts[cu.ad_id == a]) <= t + h)).any())
                   for a in ads_at_t]
            assert r.label in lab, (u, t)
            n_before = int(((ui_t < t) & (ui_t >= day0)).sum())
            assert r.ad_len == min(8, n_before), (u, t)
            order = np.argsort(ui_t, kind="stable")
            before = order[(ui_t[order] < t) & (ui_t[order] >= day0)]
            hist = before[-8:][::-1]  # newest first
            edge = before[-9:]  # the history and the next older event: no tie there, the order is determined
            if len(set(ui_t[edge])) == len(edge):
                dw = [1 + min(63, math.floor(4 * math.log(d))) for d in ui.dwell_ms.to_numpy()[hist]]
                assert list(r.ad_seq_dwell_ms[: len(dw)]) == dw, (u, t)
                assert all(v == 0 for v in r.ad_seq_dwell_ms[len(dw):])
            assert r.organic_len == min(4, int(((oi_t < t) & (oi_t >= day0)).sum())), (u, t)
            ok = su_end <= t
            if ok.any():
                k = np.argmax(np.where(ok, su_end, -1))
                assert r.segment_window_end_us == su_end[k] and r.segment == su.segment.iloc[k], (u, t)
                assert r.segment_window_end_us <= t  # no window ending after t is ever used
            else:
                assert pd.isna(r.segment_window_end_us) and r.segment == cfg.segmentation.null_corr_segment
            checked += 1
    assert checked > 200


# The paper's arms written out (DynamiX Tables 2 and 3), independent of conf: sources per segment class.
ARMS = {
    "baseline": ({"ad"}, {"ad"}),
    "remove_passive": ({"ad_reduced"}, {"ad"}),
    "remove_active": ({"ad"}, {"ad_reduced"}),
    "boost_all": ({"ad", "organic", "page"}, {"ad", "organic", "page"}),
    "boost_active": ({"ad", "organic"}, {"ad", "organic", "page"}),
}
LOW = {"surface", "media_type", "position", "device_type"}


@pytest.mark.parametrize("policy", sorted(ARMS))
def test_every_policy_null_pattern_per_segment(hand_examples, policy):
    ex, _, cfg = hand_examples
    out = apply_policy(ex, policy, cfg)
    assert out.columns.count("policy") == 1
    for r in out.collect():
        given = ARMS[policy][0 if r["segment"] == 0 else 1]
        for src, attrs in EBF_SOURCES.items():
            for a in attrs:
                present = src in given or (src == "ad" and "ad_reduced" in given and a not in LOW)
                assert (r[seq_col(src, a)] is not None) == present, (policy, r["segment"], src, a)
            if not any(src in g or (src == "ad" and "ad_reduced" in g) for g in [given]):
                assert r[f"{src}_len"] == 0, (policy, src)


def test_deleting_everything_after_t_leaves_the_example_at_t(spark, hand_examples):
    """Leakage: drop every event, conversion and window after t = 06:00 (and move the remaining
    later-than-t rows around): the examples at t keep their features and segment."""
    ex, _, cfg = hand_examples
    t = T(2026, 11, 2, 6, 0, 0)
    ads = spark.createDataFrame([r for r in ADS if r.event_ts <= t])
    queries = ads.where(F.col("event_ts") == F.lit(t))
    organic = spark.createDataFrame([r for r in ORGANIC if r.event_ts <= t])
    page = spark.createDataFrame([], "event_id string, user_id long, event_ts timestamp, page_id long, "
                                     "semantic_ids array<long>, media_type string")
    segs = spark.createDataFrame([(1, e, s) for e, s in SEGMENTS if e <= t], "user_id long, window_end timestamp, segment int")
    conv = spark.createDataFrame([(1, a, c) for a, c in CONVERSIONS if c <= t], "user_id long, ad_id long, event_ts timestamp")
    cut = build_examples(queries, {"ad": ads, "organic": organic, "page": page}, segs, conv, StatsConfig(), cfg)
    feature_cols = [c for c in ex.columns if c != "label"]
    full_at_t = sorted(tuple(r) for r in ex.where(F.col("event_ts_us") == _us(t)).select(*feature_cols).collect())
    cut_at_t = sorted(tuple(r) for r in cut.select(*feature_cols).collect())
    assert len(full_at_t) == 2 and full_at_t == cut_at_t
