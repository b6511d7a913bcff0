"""The planted mechanism (docs/PLANTED_MECHANISM.md) recovered by brute-force counts with
pandas on one small generated day, and absent under the null control, so the effect cannot silently disappear.

What is counted, independently of the generator's code: for each conversion (deduplicated, valid, with an ad),
the category of its ad (read from the ad impressions of that ad id) and the category dominating the user's
organic and page impressions earlier in the same 6-hour window (ids are ``CATALOG_STRIDE`` x category + item,
the documented encoding; most frequent category, ties to the most recent). Windows are split active
(engagement type positive/negative) / passive (low) by the truth table.

Thresholds come from the configured shares and the sample size, not from the generator's formulas: with
interest share c, view share v and K categories, a conversion whose ad is not of the interest category is
drawn without looking at the views, so it matches the dominant category with probability 1/K (the dominant
category is uniform and independent of the preferred one); one of the interest category matches whenever the
dominant category is the interest one, which is at least v (one view) and at most 1. So the match rate lies
in [c v + (1 - c)/K, c + (1 - c)/K]; under the null control (c = 0) it is 1/K. "Within noise" is 4 standard
errors, clustered by user (a user's conversions share their views).

Power users are switched off here: one user with 100x the median activity would put hundreds of correlated
conversions into four windows and make the counts about that user.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

Z = 4.0  # "within noise": 4 standard errors
LOW_IMPORTANCE = ("surface", "media_type", "position", "device_type")


def _clean(df: pd.DataFrame, ds: str) -> pd.DataFrame:
    """Valid, deduplicated rows of the day (the generator's duplicates and malformed rows dropped)."""
    df = df.dropna(subset=["event_id", "user_id", "event_ts"]).drop_duplicates("event_id")
    df = df[df["event_ts"].dt.strftime("%Y-%m-%d") == ds]
    return df.assign(user_id=df["user_id"].astype("int64"))


def _generated_day(spark, gen_cfg) -> dict[str, pd.DataFrame]:
    from dynamix_spark.generate import CATALOG_STRIDE, generate

    frames = generate(spark, gen_cfg)
    ds = gen_cfg.start_date
    cols = {
        "ad_impressions": ["event_id", "user_id", "event_ts", "ad_id", "campaign_id", "advertiser_id", "category_id",
                           "dwell_ms", *LOW_IMPORTANCE],
        "conversions": ["event_id", "user_id", "event_ts", "ad_id"],
        "organic_impressions": ["event_id", "user_id", "event_ts", "content_id", "dwell_ms"],
        "page_impressions": ["event_id", "user_id", "event_ts", "page_id"],
    }
    out = {name: _clean(frames[name].select(*c).toPandas(), ds) for name, c in cols.items()}
    org, page = out.pop("organic_impressions"), out.pop("page_impressions")
    out["organic_dwell"] = org[["user_id", "dwell_ms"]]
    out["views"] = pd.concat([
        org.assign(category=org["content_id"] // CATALOG_STRIDE)[["user_id", "event_ts", "category"]],
        page.assign(category=page["page_id"] // CATALOG_STRIDE)[["user_id", "event_ts", "category"]],
    ], ignore_index=True)
    truth = frames["truth_engagement"].select(
        "user_id", "window_start", "engagement_type", "preferred_category", "interest_category").toPandas()
    out["truth"] = truth.assign(window_start=truth["window_start"].astype("datetime64[us]"))
    return out


def _with_window(df: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(window_start=df["event_ts"].dt.floor("6h").astype("datetime64[us]"))
    df = df.merge(truth, on=["user_id", "window_start"], how="inner")
    return df.assign(active=df["engagement_type"].isin(["positive", "negative"]))


def _dominant_view_category(conv: pd.DataFrame, views: pd.DataFrame) -> pd.Series:
    """Per conversion: the most frequent category among the user's views earlier in the conversion's window
    (ties: the most recent of the tied categories); NaN without such a view."""
    by_user = {u: g.sort_values("event_ts") for u, g in views.groupby("user_id")}
    dominant = []
    for u, t, ws in conv[["user_id", "event_ts", "window_start"]].itertuples(index=False):
        g = by_user.get(u)
        if g is None:
            dominant.append(np.nan)
            continue
        cats = g.loc[(g["event_ts"] >= ws) & (g["event_ts"] < t), "category"].to_numpy()
        if len(cats) == 0:
            dominant.append(np.nan)
            continue
        counts: dict[int, int] = {}
        last: dict[int, int] = {}
        for i, c in enumerate(cats):
            counts[c] = counts.get(c, 0) + 1
            last[c] = i
        dominant.append(max(counts, key=lambda c: (counts[c], last[c])))
    return pd.Series(dominant, index=conv.index, dtype="float64")


def _rate(hit: pd.Series, cluster: pd.Series, p0: float | None = None) -> tuple[float, float, int]:
    """Mean of a series (of 0/1: a rate) and its standard error clustered by ``cluster`` (around ``p0`` when
    given)."""
    n = len(hit)
    p = float(hit.mean())
    centre = p if p0 is None else p0
    resid = (hit - centre).groupby(cluster.to_numpy()).sum()
    return p, float(np.sqrt((resid ** 2).sum()) / n), n


def _match_rates(day: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Conversions with a view earlier in their window: ad category vs dominant view category, per class."""
    conv = day["conversions"].dropna(subset=["ad_id"]).astype({"ad_id": "int64"})
    ad_category = (day["ad_impressions"].dropna(subset=["ad_id", "category_id"]).drop_duplicates("ad_id")
                   .astype({"ad_id": "int64", "category_id": "int64"}))
    conv = conv.merge(ad_category[["ad_id", "category_id"]], on="ad_id", how="inner")
    conv = _with_window(conv, day["truth"])
    conv = conv.assign(dominant=_dominant_view_category(conv, day["views"])).dropna(subset=["dominant"])
    conv = conv.assign(match=(conv["category_id"] == conv["dominant"]).astype(float))
    return {"active": conv[conv["active"]], "passive": conv[~conv["active"]]}


def _labelled_impressions(day: dict[str, pd.DataFrame], buffer_s: int = 60, horizon_s: int = 3600) -> pd.DataFrame:
    """Ad impressions with label 1 when the user converts on the same ad in [t - buffer, t + horizon] (the EBF
    label, ebf.label_horizon_s), by a merge on (user, ad) and a time filter."""
    imp = day["ad_impressions"].dropna(subset=["ad_id"]).astype({"ad_id": "int64"})
    conv = day["conversions"].dropna(subset=["ad_id"]).astype({"ad_id": "int64"})[["user_id", "ad_id", "event_ts"]]
    pairs = imp[["event_id", "user_id", "ad_id", "event_ts"]].merge(
        conv.rename(columns={"event_ts": "conv_ts"}), on=["user_id", "ad_id"])
    dt_s = (pairs["conv_ts"] - pairs["event_ts"]).dt.total_seconds()
    positive = set(pairs.loc[(dt_s >= -buffer_s) & (dt_s <= horizon_s), "event_id"])
    imp = imp.assign(label=imp["event_id"].isin(positive).astype(float))
    return _with_window(imp, day["truth"])


def _z_of_flag(label: pd.Series, flag: pd.Series, cluster: pd.Series) -> float:
    """z of the conversion rate of impressions with ``flag`` minus that of the others, with the standard error
    clustered by ``cluster`` (a user's impressions share their activity and their windows)."""
    y, x = label.to_numpy(), flag.to_numpy(dtype=bool)
    n1, n0 = x.sum(), (~x).sum()
    m1, m0 = y[x].mean(), y[~x].mean()
    infl = np.where(x, (y - m1) / n1, -(y - m0) / n0)
    se = np.sqrt((pd.Series(infl).groupby(cluster.to_numpy()).sum() ** 2).sum())
    return float((m1 - m0) / se)


def _max_abs_z(label: pd.Series, values: pd.Series, cluster: pd.Series) -> tuple[float, dict]:
    """Largest |z| of each value's conversion rate against the other values' (clustered as above)."""
    zs, rates = [], {}
    for v in sorted(values.unique()):
        flag = values == v
        zs.append(_z_of_flag(label, flag, cluster))
        rates[v] = (round(float(label[flag].mean()), 4), int(flag.sum()))
    return float(np.max(np.abs(zs))), rates


def _day_config(tiny_cfg, n_users: int, **changes):
    return replace(tiny_cfg.generator, days=1, n_users=n_users, power_user_share=0.0, **changes)


@pytest.fixture(scope="module")
def planted(spark, tiny_cfg):
    cfg = _day_config(tiny_cfg, 1000)
    assert not cfg.null_control and cfg.interest_conversion_share_active > 0  # the documented default plants it
    return cfg, _generated_day(spark, cfg)


@pytest.fixture(scope="module")
def null(spark, tiny_cfg):
    cfg = _day_config(tiny_cfg, 1000, null_control=True)
    return cfg, _generated_day(spark, cfg)


def _check_planted(cfg, day) -> dict:
    K, v = cfg.n_categories, cfg.interest_view_share
    c_a, c_p = cfg.interest_conversion_share_active, cfg.interest_conversion_share_passive
    rates = _match_rates(day)
    a, se_a, n_a = _rate(rates["active"]["match"], rates["active"]["user_id"])
    p, se_p, n_p = _rate(rates["passive"]["match"], rates["passive"]["user_id"])
    lo_a, hi_a = c_a * v + (1 - c_a) / K, c_a + (1 - c_a) / K
    lo_p, hi_p = c_p * v + (1 - c_p) / K, c_p + (1 - c_p) / K
    got = {"active": (a, se_a, n_a, (lo_a, hi_a)), "passive": (p, se_p, n_p, (lo_p, hi_p))}
    print(f"match rate (rate, clustered SE, n, expected range): {got}, chance {1 / K}")
    assert n_a >= 300 and n_p >= 150, got
    # the sample resolves the configured gap, so the assertions below can fail
    assert lo_a - Z * se_a > hi_p + Z * se_p, got
    assert lo_a - Z * se_a < a < hi_a + Z * se_a, got  # active: the conversion follows the recent views
    assert lo_p - Z * se_p < p < hi_p + Z * se_p, got  # passive: the configured weak share, no more
    assert a > 1 / K + 3 * Z * se_a, got  # far above chance
    return got


def test_recent_views_predict_active_conversions_only(planted):
    cfg, day = planted
    _check_planted(cfg, day)


def test_null_control_views_do_not_predict_conversions(null):
    cfg, day = null
    K = cfg.n_categories
    rates = _match_rates(day)
    for cls, conv in rates.items():
        r, se, n = _rate(conv["match"], conv["user_id"], p0=1 / K)
        print(f"null control, {cls}: match rate {r:.4f} (SE {se:.4f}, n {n}), chance {1 / K}")
        assert n >= 150, (cls, n)
        assert abs(r - 1 / K) < Z * se, (cls, r, se, n)


def _spearman(a: pd.Series, b: pd.Series) -> float:
    return float(np.corrcoef(a.rank(), b.rank())[0, 1])


@pytest.mark.parametrize("which", ["planted", "null"])
def test_extra_sources_share_the_users_traits_except_under_the_null_control(which, request):
    """Per user, across the day: the number of organic and page views against the number of conversions (both
    follow the user's activity), and the median log dwell of organic impressions against that of ad impressions
    (both follow the user's dwell scale). Rank correlations over users: clearly positive with the mechanism
    planted (as in life), and within 4 standard errors (1 / sqrt(n - 1) under independence) of 0 under the null
    control, whose extra sources must say nothing about a user's conversions."""
    cfg, day = request.getfixturevalue(which)
    views = day["views"].groupby("user_id").size()
    conv = day["conversions"].groupby("user_id").size()
    users = views.index.union(conv.index)
    counts = (views.reindex(users, fill_value=0), conv.reindex(users, fill_value=0))
    ad = day["ad_impressions"]
    ad = ad[(ad["dwell_ms"] >= 1_000) & (ad["dwell_ms"] <= 600_000)]  # plausible dwells: the noise left out
    org = day["organic_dwell"][(day["organic_dwell"]["dwell_ms"] >= 1_000) & (day["organic_dwell"]["dwell_ms"] <= 600_000)]
    both = pd.concat([np.log(ad.groupby("user_id")["dwell_ms"].median()).rename("ad"),
                      np.log(org.groupby("user_id")["dwell_ms"].median()).rename("org")], axis=1).dropna()
    got = {"counts": (_spearman(*counts), len(users)), "dwell": (_spearman(both["ad"], both["org"]), len(both))}
    print(f"{which}: rank correlations (rho, users) {got}")
    for name, (rho, n) in got.items():
        se = 1 / np.sqrt(n - 1)
        assert n >= 500, (which, name, n)
        if which == "null":
            assert abs(rho) < Z * se, (which, name, rho, se)
        else:
            assert rho > 2 * Z * se, (which, name, rho, se)


def test_previous_window_type_predicts_the_current_one(planted):
    """An example's segment comes from the user's previous window, so that window's type must predict the
    current one: with persistence rho, P(active | previous active) - P(active | previous passive) = rho^2
    (each window is the user's own type with probability rho, else a fresh draw; the truth table alone)."""
    cfg, day = planted
    t = day["truth"].sort_values(["user_id", "window_start"])
    active = t["engagement_type"].isin(["positive", "negative"]).to_numpy()
    same_user = t["user_id"].to_numpy()[1:] == t["user_id"].to_numpy()[:-1]
    prev, cur = active[:-1][same_user], active[1:][same_user].astype(float)
    users = t["user_id"].to_numpy()[1:][same_user]
    m1, m0 = cur[prev].mean(), cur[~prev].mean()
    # standard error of the difference, clustered by user (a user's windows share their own type)
    infl = np.where(prev, (cur - m1) / prev.sum(), -(cur - m0) / (~prev).sum())
    se = float(np.sqrt((pd.Series(infl).groupby(users).sum() ** 2).sum()))
    rho2 = cfg.engagement_persistence ** 2
    assert abs((m1 - m0) - rho2) < Z * se, (m1, m0, rho2, se)
    assert rho2 - Z * se > 0.2, (rho2, se)  # the sample resolves it
    shares = pd.Series(active).mean()
    assert abs(shares - 0.65) < 0.05, shares  # the types' shares are the configured 0.4 + 0.25 (+ noise)


@pytest.mark.parametrize("which", ["planted", "null"])
def test_low_importance_attributes_carry_no_signal(which, request):
    cfg, day = request.getfixturevalue(which)
    imp = _labelled_impressions(day)
    assert imp["label"].sum() >= 1000, imp["label"].sum()
    position_bucket = pd.cut(imp["position"], [0, 10, 20, 30]).astype(str)
    for attr, values in (("surface", imp["surface"]), ("media_type", imp["media_type"]),
                         ("position", position_bucket), ("device_type", imp["device_type"])):
        for cls, part in (("active", imp["active"]), ("passive", ~imp["active"])):
            z, per_value = _max_abs_z(imp.loc[part, "label"], values[part], imp.loc[part, "user_id"])
            assert z < Z, (which, attr, cls, per_value)
    # The same count has the power to see the planted effect: impressions of an ad of the window's interest
    # category convert far more often in active windows (the extra sources' signal). Under the null control
    # that group is ~1% of impressions with ~40 positives on this day, too few for a 4-SE bound to mean much:
    # the slow test checks it on 5x the users.
    z_active = _interest_z_active(imp)
    print(f"{which}: {int(imp['label'].sum())} positive of {len(imp)} impressions; z of the interest category's"
          f" conversion rate in active windows {z_active:.1f}")
    if which == "planted":
        assert z_active > 2 * Z, z_active


def _reexposure_differences(day: dict[str, pd.DataFrame], burst_s: int = 240, own_s: int = 30) -> pd.DataFrame:
    """Per conversion (with an ad, in an active or passive window), the ad impressions the user was shown in
    [t - burst_s, t - own_s) (the minutes before it, without the 30 s before t that hold its own impression) counted
    at three levels against an ad X: X itself; another ad of X's campaign; an ad of X's advertiser in another
    campaign. Columns ``d_<level>`` = count for the converted ad - count for a placebo ad: the converted ad of a
    conversion of another user with the same preferred category (within each preferred category, conversions are
    paired with the one half the group away). A placebo ad is drawn as the converted one is when nothing is
    planted, and independently of this user's impressions, so every difference has mean 0 under the null control."""
    ads = day["ad_impressions"].dropna(subset=["ad_id", "campaign_id", "advertiser_id"]).astype(
        {"ad_id": "int64", "campaign_id": "int64", "advertiser_id": "int64"})
    info = ads.drop_duplicates("ad_id")[["ad_id", "campaign_id", "advertiser_id"]]
    conv = day["conversions"].dropna(subset=["ad_id"]).astype({"ad_id": "int64"})
    pref = day["truth"].drop_duplicates("user_id")[["user_id", "preferred_category"]]
    conv = conv.merge(pref, on="user_id").sort_values(["preferred_category", "user_id", "event_ts"])
    parts = []
    for _, g in conv.groupby("preferred_category"):
        other = g.iloc[np.roll(np.arange(len(g)), len(g) // 2)]
        parts.append(g.assign(placebo_ad=other["ad_id"].to_numpy(), placebo_user=other["user_id"].to_numpy()))
    conv = pd.concat(parts)
    conv = conv[conv["placebo_user"] != conv["user_id"]]
    conv = _with_window(conv, day["truth"]).rename(columns={"event_ts": "conv_ts", "event_id": "conv_id"})
    shown = conv.merge(ads[["user_id", "event_ts", "ad_id", "campaign_id", "advertiser_id"]].rename(
        columns={"ad_id": "shown_ad", "campaign_id": "shown_campaign", "advertiser_id": "shown_advertiser"}),
        on="user_id")
    before_s = (shown["conv_ts"] - shown["event_ts"]).dt.total_seconds()
    shown = shown[(before_s > own_s) & (before_s <= burst_s)]
    out = conv[["conv_id", "user_id", "active"]].set_index("conv_id")
    for name, col in (("converted", "ad_id"), ("placebo", "placebo_ad")):
        x = shown.merge(info.rename(columns={"ad_id": col, "campaign_id": "x_campaign", "advertiser_id": "x_adv"}),
                        on=col)
        same_ad = x["shown_ad"] == x[col]
        same_campaign = (x["shown_campaign"] == x["x_campaign"]) & ~same_ad
        same_adv = (x["shown_advertiser"] == x["x_adv"]) & (x["shown_campaign"] != x["x_campaign"])
        for level, hit in (("ad", same_ad), ("campaign", same_campaign), ("advertiser", same_adv)):
            out[f"{name}_{level}"] = hit.groupby(x["conv_id"]).sum().reindex(out.index, fill_value=0)
    for level in ("ad", "campaign", "advertiser"):
        out[f"d_{level}"] = out[f"converted_{level}"] - out[f"placebo_{level}"]
    return out


@pytest.mark.parametrize("which", ["planted", "null"])
def test_reexposure_before_active_conversions_at_every_id_level(which, request):
    """The planted id signal: in the minutes before a conversion in an active window the user is shown the converted
    ad, another ad of its campaign and another of its advertiser more often than a placebo ad (a like-drawn converted
    ad of another user), at each level on its own; under the null control no level differs from the placebo."""
    _check_reexposure(which, request.getfixturevalue(which)[1])


def _check_reexposure(which: str, day: dict[str, pd.DataFrame]) -> None:
    diffs = _reexposure_differences(day)
    act = diffs[diffs["active"]]
    assert len(act) >= 500, len(act)
    for level in ("ad", "campaign", "advertiser"):
        mean, se, _n = _rate(act[f"d_{level}"], act["user_id"])
        print(f"{which}: {level} level, mean count before an active conversion {act[f'converted_{level}'].mean():.3f} "
              f"(placebo {act[f'placebo_{level}'].mean():.3f}), difference {mean:.3f} se {se:.3f}, n {len(act)}")
        if which == "planted":
            assert mean > 2 * Z * se, (level, mean, se)
        else:
            assert abs(mean) < Z * se, (level, mean, se)


def _interest_z_active(imp: pd.DataFrame) -> float:
    act = imp["active"]
    interest = imp["category_id"] == imp["interest_category"]
    return _z_of_flag(imp.loc[act, "label"], interest[act], imp.loc[act, "user_id"])


@pytest.mark.parametrize("override, key", [
    ("generator.interest_view_share=1.5", "generator.interest_view_share"),
    ("generator.interest_conversion_share_active=-0.1", "generator.interest_conversion_share_active"),
    ("generator.preferred_conversion_share_passive=0.96", "generator.preferred_conversion_share_passive"),
    ("generator.catalog_items_per_category=1001", "generator.catalog_items_per_category"),
    ("generator.reexposure_share_active=1.2", "generator.reexposure_share_active"),
    ("generator.null_control=maybe", "generator.null_control"),
])
def test_bad_effect_sizes_name_the_key(override, key):
    from conftest import ROOT
    from dynamix_spark.config import ConfigError, load_config

    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "conf" / "local.yaml", [override])
    assert key in str(e.value)
    assert load_config(ROOT / "conf" / "local.yaml", ["generator.null_control=true"]).generator.null_control


@pytest.mark.slow
def test_planted_and_null_on_a_larger_day_and_another_seed(spark, tiny_cfg):
    """5x the users and another seed: the planted bounds hold, and the null control's match rates stay within
    noise of chance with standard errors about 2.2x smaller; so does the re-exposure count."""
    cfg = _day_config(tiny_cfg, 5000, seed=tiny_cfg.generator.seed + 100)
    planted_day = _generated_day(spark, cfg)
    got = _check_planted(cfg, planted_day)
    _check_reexposure("planted", planted_day)
    assert got["passive"][0] < got["active"][0] / 3, got
    null_day = _generated_day(spark, replace(cfg, null_control=True))
    for cls, conv in _match_rates(null_day).items():
        r, se, n = _rate(conv["match"], conv["user_id"], p0=1 / cfg.n_categories)
        print(f"null control (5000 users), {cls}: match rate {r:.4f} (SE {se:.4f}, n {n})")
        assert abs(r - 1 / cfg.n_categories) < Z * se, (cls, r, se, n)
    # and an impression's conversion rate does not depend on whether its ad is of the interest category
    z = _interest_z_active(_labelled_impressions(null_day))
    print(f"null control (5000 users): z of the interest category's conversion rate in active windows {z:.2f}")
    assert abs(z) < Z, z
    _check_reexposure("null", null_day)
