"""The generator's promises, measured on its raw Parquet output with pandas (not with the generator)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from rawdata import epoch_us, raw_frame
from conftest import MID_DS, TEST_DATES


def test_contract_columns_and_partitions(tiny_cfg, tiny_raw):
    from schemas.raw import RAW_SCHEMAS

    for source, schema in RAW_SCHEMAS.items():
        df = raw_frame(tiny_cfg.paths.raw_root, source)
        assert [c for c in df.columns if c != "ds"] == [f.name for f in schema.fields], source
        assert sorted(df["ds"].unique()) == list(TEST_DATES), source
        # ds is the UTC date of event_ts, except for the rows deliberately moved outside their day
        same_day = (df["event_ts"].dt.strftime("%Y-%m-%d") == df["ds"]).mean()
        assert same_day > 0.99, (source, same_day)


def test_duplicate_share(tiny_cfg, tiny_raw):
    df = raw_frame(tiny_cfg.paths.raw_root, "ad_impressions").dropna(subset=["event_id"])
    dup_share = df.duplicated("event_id").mean()
    # configured 1%; exact copies of the whole row
    assert 0.005 < dup_share < 0.02, dup_share
    dups = df[df.duplicated("event_id", keep=False)].drop(columns=["semantic_ids"])
    assert (dups.groupby("event_id").nunique(dropna=False) <= 1).all().all()


def test_dwell_outlier_and_malformed_shares(tiny_cfg, tiny_raw):
    df = raw_frame(tiny_cfg.paths.raw_root, "ad_impressions")
    d = df["dwell_ms"]
    short = ((d >= 0) & (d < 250)).mean()
    long_ = (d > 3_600_000).mean()
    assert 0.005 < short < 0.02 and 0.005 < long_ < 0.02, (short, long_)  # 1% each configured
    malformed = df["user_id"].isna().mean() + (d < 0).mean()
    outside = (df["event_ts"].dt.strftime("%Y-%m-%d") != df["ds"]).mean()
    assert 0.0005 < malformed + outside < 0.005, (malformed, outside)  # 0.2% configured
    assert df["user_id"].isna().sum() > 0 and (d < 0).sum() > 0 and outside > 0


def _nearest_own_impression_offsets(tiny_cfg) -> np.ndarray:
    """For each conversion with an ad, seconds from it to the nearest impression of the same user and ad."""
    imp = raw_frame(tiny_cfg.paths.raw_root, "ad_impressions").dropna(subset=["user_id", "ad_id"])
    conv = raw_frame(tiny_cfg.paths.raw_root, "conversions").dropna(subset=["user_id", "ad_id", "event_id"])
    conv = conv.drop_duplicates("event_id")
    imp = imp.assign(t=epoch_us(imp["event_ts"]) / 1e6)
    conv = conv.assign(t=epoch_us(conv["event_ts"]) / 1e6)
    groups = {k: g["t"].to_numpy() for k, g in imp.groupby(["user_id", "ad_id"])}
    offsets = []
    for u, a, t in conv[["user_id", "ad_id", "t"]].itertuples(index=False):
        ts = groups.get((u, a))
        if ts is None:
            continue
        d = ts - t
        offsets.append(d[np.argmin(np.abs(d))])
    return np.array(offsets)


def test_conversions_logged_before_their_impression(tiny_cfg, tiny_raw):
    off = _nearest_own_impression_offsets(tiny_cfg)
    assert len(off) > 200
    near = off[np.abs(off) <= 60]
    assert len(near) / len(off) > 0.9  # the own impression is within a minute
    share_before = (near > 0).mean()  # impression logged after the conversion
    assert 0.2 < share_before < 0.4, share_before  # configured 30%
    assert near.max() <= 60


def test_activity_is_heavy_tailed(tiny_cfg, tiny_raw):
    df = raw_frame(tiny_cfg.paths.raw_root, "ad_impressions", MID_DS).dropna(subset=["user_id"])
    per_user = df.groupby("user_id").size()
    assert per_user.max() / per_user.median() >= 50, (per_user.max(), per_user.median())
    # a daily cycle: the busiest hour has clearly more traffic than the quietest
    by_hour = df["event_ts"].dt.hour.value_counts()
    assert by_hour.max() / by_hour.min() > 2


def test_planted_dwell_shift_per_engagement_type(tiny_cfg, tiny_raw):
    """ln dwell just before a conversion minus far from any, per planted type: about +0.8, -0.8, 0."""
    imp = raw_frame(tiny_cfg.paths.raw_root, "ad_impressions").dropna(subset=["user_id"])
    imp = imp[(imp["dwell_ms"] >= 250) & (imp["dwell_ms"] <= 600_000)].drop_duplicates("event_id")
    conv = raw_frame(tiny_cfg.paths.raw_root, "conversions").dropna(subset=["user_id"]).drop_duplicates("event_id")
    truth = pd.read_parquet(f"{tiny_cfg.paths.truth_root}/truth_engagement")
    imp = imp.assign(t=epoch_us(imp["event_ts"]) // 1_000_000)
    conv_t = {u: np.sort(epoch_us(g["event_ts"]) // 1_000_000) for u, g in conv.groupby("user_id")}
    before, far = [], []
    for u, g in imp.groupby("user_id"):
        c = conv_t.get(u)
        if c is None:
            continue
        t = g["t"].to_numpy()
        i = np.searchsorted(c, t, side="left")  # first conversion at or after t
        nxt = np.where(i < len(c), c[np.minimum(i, len(c) - 1)] - t, 10**9)
        prv = np.where(i > 0, t - c[np.maximum(i - 1, 0)], 10**9)
        before.append(g[(nxt <= 200) & (nxt >= 0)])  # within 200 s before a conversion
        far.append(g[(nxt > 900) & (prv > 900)])  # more than 15 min from any conversion
    tw = truth.assign(window_start=truth["window_start"].astype("datetime64[us]"))
    keys = ["user_id", "window_start", "engagement_type"]
    means = {}
    for name, parts in (("before", before), ("far", far)):
        d = pd.concat(parts)
        d = d.assign(window_start=d["event_ts"].dt.floor("6h").astype("datetime64[us]"), x=np.log(d["dwell_ms"]))
        d = d.merge(tw[["user_id", "window_start", "engagement_type"]], on=["user_id", "window_start"])
        means[name] = d.groupby(keys)["x"].mean()
    # Per user window (a power user's many background impressions would otherwise dominate), then the
    # median over windows of each planted type; 0.8 is planted, diluted by background impressions.
    delta = (means["before"] - means["far"]).dropna().groupby(level="engagement_type").median()
    assert delta["positive"] > 0.5, delta
    assert delta["negative"] < -0.5, delta
    assert abs(delta["low"]) < 0.15, delta


def test_generator_is_deterministic(spark, tiny_cfg, tiny_raw, tmp_path):
    from dataclasses import replace

    from dynamix_spark.generate import generate

    cfg = replace(tiny_cfg.generator, days=1, n_users=40)
    a = generate(spark, cfg)["ad_impressions"].repartition(3)
    b = generate(spark, cfg)["ad_impressions"].repartition(1)
    assert a.count() > 0
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0
    c = generate(spark, replace(cfg, seed=cfg.seed + 1))["ad_impressions"]
    assert a.exceptAll(c).count() > 0


def test_semantic_ids_are_a_function_of_the_item(tiny_cfg, tiny_raw):
    """An ad's (a page's) semantic ids are codes of its content: one array per ad_id (page_id), whichever impression
    carries it, with the category's code first; and distinct items mostly get distinct arrays."""
    for source, item in (("ad_impressions", "ad_id"), ("page_impressions", "page_id")):
        df = raw_frame(tiny_cfg.paths.raw_root, source).dropna(subset=[item, "category_id"])
        df = df[df["semantic_ids"].map(lambda a: a is not None and len(a) > 0)]
        codes = df.assign(sem=df["semantic_ids"].map(tuple))
        per_item = codes.groupby(item)["sem"].nunique()
        assert len(per_item) > 20 and (per_item == 1).all(), (source, per_item.max())
        first = codes["sem"].map(lambda t: t[0] // 100)
        assert (first == codes["category_id"]).all(), source
        items = codes.drop_duplicates(item)
        assert items["sem"].nunique() > 0.9 * len(items), source
