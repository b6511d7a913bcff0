"""A realistic synthetic log generator, run by Spark in parallel and deterministic for a seed.

Every random draw is a hash of (seed, salt, keys), not a stateful RNG, so the output does not depend on
partitioning or on the number of executors, and scales from a tiny test set to 100M+ events by
parameters alone. What it plants, for the pipeline to find and survive:

- heavy-tailed activity: log-normal per-user activity plus a share of power users at
  ``power_user_multiplier`` x the median; a daily cycle of event times;
- per user and 6-hour window an engagement type: ad dwell in the minutes before a conversion is shifted
  up (``positive``), down (``negative``) or not at all (``low``) in log space (the paper's Figure 4);
- conversions logged up to 60 s before the impression they belong to (the paper's logging delay);
- dwell noise from a few ms to several hours, exact duplicate events, and malformed rows (null ids,
  negative dwell, timestamps outside the partition's day);
- the planted mechanism (docs/PLANTED_MECHANISM.md; effect sizes in ``generator.*``):
  each user has a preferred category, shown in ``EXPOSURE_PREFERRED_SHARE`` of their ads, and per 6-hour
  window an interest category, shown in ``interest_view_share`` of their organic and page impressions and
  in ads only by chance. In active windows (``positive``/``negative``) a share of conversions is on an ad
  of the interest category (which only the extra sources reveal) and a share on the preferred category
  (which the ad history reveals); in passive (``low``) windows both shares are small. Every other
  conversion's category is drawn like a shown ad's, so it carries no signal. Re-exposure: a share of the ads
  shown in the minutes before a conversion (``reexposure_share_active`` / ``_passive``) are the converted ad,
  another ad of its campaign, or of its advertiser (one level each, equally likely), which only the ad history's
  id attributes reveal. ``null_control`` sets every conversion and re-exposure share to 0 and draws the organic
  and page sources for an independent copy of each user's activity and dwell scale, so that nothing in them is
  informative about conversions. ``surface``, ``media_type``, ``position`` and ``device_type`` (the low-importance
  attributes) are drawn independently of everything, for every user.

Organic content and page ids carry their category: ``id // CATALOG_STRIDE`` (items per category from
``catalog_items_per_category``), also logged as the impression's ``category_id`` (the content's taxonomy
category, in the same vocabulary as an ad's ``category_id``).
"""
from __future__ import annotations

import math
from dataclasses import replace

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from dynamix_spark.config import GeneratorConfig
from dynamix_spark.raw_io import mark_partition_ready
from schemas.dates import days_from
from schemas.raw import RAW_SCHEMAS
from schemas.tables import TRUTH_ENGAGEMENT

ENGAGEMENT_TYPES = ("positive", "negative", "low")
ENGAGEMENT_PROBS = (0.4, 0.25, 0.35)
TRUTH_WINDOW_S = 21_600  # the planted engagement type is constant over 6-hour windows
BURST_LOOKBACK_S = 240  # burst impressions lie in [c - 240 s, c]: inside the default 300 s horizon
SURFACES = ("feed", "stories", "reels", "marketplace")
MEDIA_TYPES = ("image", "video", "carousel")
DEVICES = ("ios", "android", "web")
EXPOSURE_PREFERRED_SHARE = 0.5  # ads shown (background and burst) of the user's preferred category; else uniform
CATALOG_STRIDE = 1000  # organic content_id and page_id = CATALOG_STRIDE x category + item
# campaigns are ADS_PER_CAMPAIGN consecutive ad ids (id // 10), advertisers ADS_PER_ADVERTISER (id // 100)
ADS_PER_CAMPAIGN, ADS_PER_ADVERTISER = 10, 100
NULL_DECOY_SEED_OFFSET = 7_919  # null_control: the extra sources' user traits are users() drawn with seed + this
_MASK53 = (1 << 53) - 1


class Draws:
    """Deterministic pseudo-random columns: hash(seed, salt, keys) -> uniform, normal, choice."""

    def __init__(self, seed: int):
        self.seed = seed

    def uniform(self, salt: str, *keys: Column) -> Column:
        h = F.xxhash64(F.lit(self.seed), F.lit(salt), *keys)
        return h.bitwiseAND(F.lit(_MASK53)).cast("double") / float(1 << 53)

    def normal(self, salt: str, *keys: Column) -> Column:
        u1 = F.lit(1.0) - self.uniform(salt + "#1", *keys)  # (0, 1]
        u2 = self.uniform(salt + "#2", *keys)
        return F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)

    def integer(self, salt: str, lo: int, hi: int, *keys: Column) -> Column:
        """Uniform integer in [lo, hi]."""
        return (F.lit(lo) + F.floor(self.uniform(salt, *keys) * (hi - lo + 1))).cast("long")

    def choice(self, salt: str, options: tuple[str, ...], *keys: Column) -> Column:
        idx = F.floor(self.uniform(salt, *keys) * len(options)).cast("int")
        return F.element_at(F.array(*[F.lit(o) for o in options]), idx + 1)

    def count(self, salt: str, mean: Column, *keys: Column) -> Column:
        """A non-negative integer with the given mean (uniform jitter of +-50%, rounded stochastically)."""
        x = mean * (F.lit(0.5) + self.uniform(salt, *keys))
        return (F.floor(x) + F.when(self.uniform(salt + "#r", *keys) < x - F.floor(x), 1).otherwise(0)).cast("int")


def _daily_cycle_second(u: Column) -> Column:
    """Map a uniform draw to a second of the day with an evening peak (monotone, so still a bijection)."""
    frac = u + F.lit(0.11) * F.sin(F.lit(2 * math.pi) * u)
    return F.floor(F.pmod(frac + F.lit(0.35), F.lit(1.0)) * 86_400).cast("long")


def _dates(cfg: GeneratorConfig) -> list[str]:
    return days_from(cfg.start_date, cfg.days)


def users(spark: SparkSession, cfg: GeneratorConfig) -> DataFrame:
    """One row per user: activity multiplier, preferred category and personal dwell scale."""
    r = Draws(cfg.seed)
    uid = F.col("user_id")
    base = spark.range(1, cfg.n_users + 1, numPartitions=max(2, min(64, cfg.n_users // 5000 + 2)))
    # Exactly round(share * n) power users (at least one when the share is positive), spread over the id
    # range by a stride coprime with n: a random draw could give none in a small test set.
    n_power = max(1, round(cfg.power_user_share * cfg.n_users)) if cfg.power_user_share > 0 else 0
    stride = next(p for p in range(7919, 10**6) if math.gcd(p, cfg.n_users) == 1)
    is_power = F.pmod((F.col("id") + cfg.seed) * stride, F.lit(cfg.n_users)) < n_power
    return base.select(
        F.col("id").alias("user_id"),
        F.when(is_power, F.lit(cfg.power_user_multiplier))
        .otherwise(F.exp(r.normal("activity", uid) * cfg.activity_sigma)).alias("activity"),
        r.integer("pref_cat", 0, cfg.n_categories - 1, uid).alias("preferred_category"),
        (F.lit(cfg.log_dwell_mean) + F.lit(0.3) * r.normal("user_dwell", uid)).alias("user_log_dwell"),
    )


def user_days(spark: SparkSession, cfg: GeneratorConfig) -> DataFrame:
    days = spark.createDataFrame([(i, d) for i, d in enumerate(_dates(cfg))], "day_idx int, day string")
    days = days.withColumn("day_start_s", F.unix_timestamp(F.to_timestamp("day")))
    return users(spark, cfg).crossJoin(F.broadcast(days))


def _window_start_s(ts_s: Column) -> Column:
    """Start (epoch s) of the planted 6-hour window holding ``ts_s``."""
    return (ts_s - F.pmod(ts_s, F.lit(TRUTH_WINDOW_S))).cast("long")


def _window_truth(cfg: GeneratorConfig, user_id: Column, window_start_s: Column) -> tuple[Column, Column]:
    """The planted engagement type and interest category of a user's window: hashes of (user, window start),
    so every source computes them where it needs them, without a join, and ``truth`` writes the same values.

    With probability ``engagement_persistence`` a window takes the user's own type (one draw per user), else
    a fresh draw; both have ``ENGAGEMENT_PROBS``, so the share of each type is unchanged, and the previous
    window's type (what an example's segment is computed from) predicts the current one: P(active | previous
    active) - P(active | previous passive) = persistence^2."""
    r = Draws(cfg.seed)
    ws = window_start_s.cast("long")
    u = F.when(r.uniform("engagement_persist", user_id, ws) < cfg.engagement_persistence,
               r.uniform("engagement_user", user_id)).otherwise(r.uniform("engagement", user_id, ws))
    p0, p1, _ = ENGAGEMENT_PROBS
    etype = F.when(u < p0, "positive").when(u < p0 + p1, "negative").otherwise("low")
    return etype, r.integer("interest_cat", 0, cfg.n_categories - 1, user_id, ws)


def truth(user_day: DataFrame, cfg: GeneratorConfig) -> DataFrame:
    """The planted engagement type and interest category per user and 6-hour window."""
    w = user_day.withColumn("w", F.explode(F.sequence(F.lit(0), F.lit(86_400 // TRUTH_WINDOW_S - 1))))
    ws = F.col("day_start_s") + F.col("w") * TRUTH_WINDOW_S
    etype, interest = _window_truth(cfg, F.col("user_id"), ws)
    return w.select(
        "user_id",
        F.timestamp_seconds(ws).alias("window_start"),
        etype.alias("engagement_type"),
        "activity",
        "preferred_category",
        interest.alias("interest_category"),
        F.col("day").alias("ds"),
    )


def _explode_count(df: DataFrame, n: Column, name: str) -> DataFrame:
    # sequence(1, 0) would count down, so the upper end is at least 1 and the filter removes the rest.
    return df.withColumn(name, F.explode(F.sequence(F.lit(1), F.greatest(n, F.lit(1))))).where(
        F.col(name) <= n
    )


def _ads_per_category(cfg: GeneratorConfig) -> int:
    return max(1, cfg.n_ads // cfg.n_categories)


def _drawn_ad_id(r: Draws, cfg: GeneratorConfig, category: Column, key: Column) -> Column:
    """An ad of ``category``, uniform within it: ads are numbered 1.. by category (ads_per_category each)."""
    ads_per_cat = _ads_per_category(cfg)
    return category * ads_per_cat + r.integer("ad_in_cat", 0, ads_per_cat - 1, key) + 1


def _ad_attributes(df: DataFrame, r: Draws, cfg: GeneratorConfig, ad_id: Column, key: Column) -> DataFrame:
    """The attributes of ad ``ad_id`` (its category and in-category index follow from the numbering); ``key``
    draws the impression's surface, media type, position and device."""
    ads_per_cat = _ads_per_category(cfg)
    category = F.floor((ad_id - 1) / ads_per_cat)
    in_cat = F.pmod(ad_id - 1, F.lit(ads_per_cat))
    return (
        df.withColumn("category_id", category.cast("long"))
        .withColumn("ad_id", ad_id.cast("long"))
        .withColumn("campaign_id", (F.col("ad_id") / ADS_PER_CAMPAIGN).cast("long") + 1_000_000)
        .withColumn("advertiser_id", (F.col("ad_id") / ADS_PER_ADVERTISER).cast("long") + 2_000_000)
        # An ad's semantic ids are codes of its content, so a function of the ad (as content-derived codes are):
        # two coarse codes within its category, one fine code.
        .withColumn("semantic_ids", F.array(
            F.col("category_id") * 100 + in_cat % 10,
            F.col("category_id") * 100 + 10 + F.floor(in_cat / 10) % 10,
            F.lit(10_000) + F.col("ad_id") % 1000,
        ).cast("array<long>"))
        .withColumn("surface", r.choice("surface", SURFACES, key))
        .withColumn("media_type", r.choice("media", MEDIA_TYPES, key))
        .withColumn("position", r.integer("position", 1, 30, key).cast("int"))
        .withColumn("device_type", r.choice("device", DEVICES, key))
    )


def _shown_category(r: Draws, cfg: GeneratorConfig, salt: str, key: Column) -> Column:
    """The category of a shown ad: the user's preferred one with EXPOSURE_PREFERRED_SHARE, else uniform."""
    return F.when(r.uniform(f"{salt}_pref", key) < EXPOSURE_PREFERRED_SHARE, F.col("preferred_category")).otherwise(
        r.integer(f"{salt}_cat", 0, cfg.n_categories - 1, key))


def _viewed_category(r: Draws, cfg: GeneratorConfig, salt: str, user_id: Column, ts_s: Column, key: Column) -> Column:
    """The category of an organic or page impression at ``ts_s``: the window's interest category with
    ``interest_view_share``, else uniform."""
    _etype, interest = _window_truth(cfg, user_id, _window_start_s(ts_s))
    return F.when(r.uniform(f"{salt}_interest", key) < cfg.interest_view_share, interest).otherwise(
        r.integer(f"{salt}_cat", 0, cfg.n_categories - 1, key))


def conversion_shares(cfg: GeneratorConfig) -> dict[str, tuple[float, float]]:
    """(interest share, preferred share) of conversions per window class; all 0 under ``null_control``."""
    if cfg.null_control:
        return {"active": (0.0, 0.0), "passive": (0.0, 0.0)}
    return {"active": (cfg.interest_conversion_share_active, cfg.preferred_conversion_share_active),
            "passive": (cfg.interest_conversion_share_passive, cfg.preferred_conversion_share_passive)}


# a re-exposed ad: the converted one, or another ad of its campaign or of its advertiser
REEXPOSURE_LEVELS = ("ad", "campaign", "advertiser")


def reexposure_shares(cfg: GeneratorConfig) -> dict[str, float]:
    """Share of the burst before a conversion that re-exposes the converted ad, per window class; 0 under
    ``null_control``."""
    if cfg.null_control:
        return {"active": 0.0, "passive": 0.0}
    return {"active": cfg.reexposure_share_active, "passive": cfg.reexposure_share_passive}


def _reexposed_ad_id(r: Draws, cfg: GeneratorConfig, converted: Column, key: Column) -> Column:
    """An ad related to ad ``converted``: itself, or uniform among its campaign's or its advertiser's ads, one level
    each with equal probability; kept within the numbered ads."""
    level = r.integer("reexpose_level", 0, len(REEXPOSURE_LEVELS) - 1, key)
    campaign = (F.floor(converted / ADS_PER_CAMPAIGN) * ADS_PER_CAMPAIGN
                + r.integer("reexpose_campaign", 0, ADS_PER_CAMPAIGN - 1, key))
    advertiser = (F.floor(converted / ADS_PER_ADVERTISER) * ADS_PER_ADVERTISER
                  + r.integer("reexpose_advertiser", 0, ADS_PER_ADVERTISER - 1, key))
    related = F.when(level == 0, converted).when(level == 1, campaign).otherwise(advertiser)
    return F.least(F.greatest(related, F.lit(1)), F.lit(_ads_per_category(cfg) * cfg.n_categories)).cast("long")


def _dwell(r: Draws, cfg: GeneratorConfig, key: Column, shift: Column) -> Column:
    """Plausible dwell (ms): log-normal around the user's scale, shifted in log space by ``shift``."""
    log_d = F.col("user_log_dwell") + shift + F.lit(cfg.log_dwell_std) * r.normal("dwell", key)
    return F.greatest(F.round(F.exp(log_d)), F.lit(260.0)).cast("long")


def _noisy_dwell(r: Draws, cfg: GeneratorConfig, key: Column, dwell: Column) -> Column:
    """Replace a ``dwell_noise_share`` of dwells by implausible ones: 1-200 ms or 1-6 hours."""
    u = r.uniform("dwell_noise", key)
    short = r.integer("dwell_short", 1, 200, key)
    long_ = r.integer("dwell_long", 3_600_000, 6 * 3_600_000, key)
    half = cfg.dwell_noise_share / 2
    return F.when(u < half, short).when(u < cfg.dwell_noise_share, long_).otherwise(dwell)


def ad_impressions_and_conversions(user_day: DataFrame, cfg: GeneratorConfig):
    r = Draws(cfg.seed)
    uid, day = F.col("user_id"), F.col("day_idx")

    # Conversions, each with the impression it belongs to and a burst of impressions before it.
    conv = _explode_count(user_day, r.count("n_conv", F.col("activity") * cfg.conversions_per_user_day, uid, day), "k")
    ckey = F.concat_ws(":", uid, day, F.col("k"))
    conv = conv.withColumn("conv_s", F.col("day_start_s") + _daily_cycle_second(r.uniform("conv_t", ckey)))
    etype, interest = _window_truth(cfg, uid, _window_start_s(F.col("conv_s")))
    conv = conv.withColumn("etype", etype).withColumn("interest_category", interest)
    # The planted mechanism: which category the converted ad is of (module docstring).
    shares = conversion_shares(cfg)
    active = F.col("etype").isin("positive", "negative")
    interest_share = F.when(active, shares["active"][0]).otherwise(shares["passive"][0])
    either_share = F.when(active, sum(shares["active"])).otherwise(sum(shares["passive"]))
    u = r.uniform("conv_source", ckey)
    category_source = F.when(u < interest_share, "interest").when(u < either_share, "preferred").otherwise("shown")
    conv = conv.withColumn("category_source", category_source)
    conv_cat = (F.when(F.col("category_source") == "interest", F.col("interest_category"))
                .when(F.col("category_source") == "preferred", F.col("preferred_category"))
                .otherwise(_shown_category(r, cfg, "conv", ckey)))
    # Keyed by the conversion's event id: with ckey itself, conversion k's ad would share its in-category
    # draw (and so often its ad_id) and its attributes with background impression k of the same user-day.
    cv_key = F.concat(F.lit("cv-"), ckey)
    conv = _ad_attributes(conv, r, cfg, _drawn_ad_id(r, cfg, conv_cat, cv_key), cv_key)
    pre_logged = r.uniform("pre_logged", ckey) < cfg.pre_logged_conversion_share
    # The impression a conversion belongs to: logged up to max_logging_delay_s after the conversion for a
    # share of conversions (the logging delay), otherwise 1-30 s before it.
    own_offset = F.when(pre_logged, r.integer("delay", 1, cfg.max_logging_delay_s, ckey)).otherwise(
        -r.integer("lead", 1, 30, ckey))
    conv = conv.withColumn("own_s", F.col("conv_s") + own_offset).withColumn("pre_logged", pre_logged)
    shift = (F.when(F.col("etype") == "positive", cfg.planted_dwell_shift)
             .when(F.col("etype") == "negative", -cfg.planted_dwell_shift).otherwise(0.0))
    conv = conv.withColumn("shift", shift)

    conversions = conv.select(
        cv_key.alias("event_id"),
        "user_id",
        F.timestamp_seconds("conv_s").alias("event_ts"),
        F.when(r.uniform("conv_no_ad", ckey) < 0.05, F.lit(None).cast("long")).otherwise(F.col("ad_id")).alias("ad_id"),
        r.choice("conv_type", ("click", "like", "share", "comment", "purchase"), ckey).alias("conversion_type"),
        F.col("pre_logged"),
        F.col("category_source"),
    )

    own = conv.select(
        F.concat(F.lit("ai-own-"), ckey).alias("event_id"), "user_id", F.col("own_s").alias("ts_s"),
        "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface", "media_type",
        "position", "device_type", "user_log_dwell", "shift", "day",
    )
    burst = _explode_count(conv, r.count("n_burst", F.lit(cfg.burst_impressions_per_conversion), ckey), "j")
    bkey = F.concat_ws(":", ckey, F.col("j"))
    burst_cat = _shown_category(r, cfg, "burst", bkey)
    # Re-exposure (the planted id signal): a share of the burst shows the converted ad or an ad of its campaign or
    # advertiser; the rest is drawn like any shown ad (all of it under the null control, exactly as before).
    reexposure = reexposure_shares(cfg)
    reexposed = r.uniform("reexpose", bkey) < F.when(active, reexposure["active"]).otherwise(reexposure["passive"])
    burst_ad = F.when(reexposed, _reexposed_ad_id(r, cfg, F.col("ad_id"), bkey)).otherwise(
        _drawn_ad_id(r, cfg, burst_cat, bkey))
    burst = _ad_attributes(burst.withColumn("burst_ad_id", burst_ad)
                           .drop("category_id", "ad_id", "campaign_id", "advertiser_id", "semantic_ids",
                                 "surface", "media_type", "position", "device_type"),
                           r, cfg, F.col("burst_ad_id"), bkey)
    burst = burst.select(
        F.concat(F.lit("ai-b-"), bkey).alias("event_id"), "user_id",
        (F.col("conv_s") - r.integer("burst_t", 0, BURST_LOOKBACK_S, bkey)).alias("ts_s"),
        "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface", "media_type",
        "position", "device_type", "user_log_dwell", "shift", "day",
    )

    bg = _explode_count(user_day, r.count("n_bg", F.col("activity") * cfg.ad_impressions_per_user_day, uid, day), "k")
    gkey = F.concat_ws(":", uid, day, F.col("k"))
    bg_cat = _shown_category(r, cfg, "bg", gkey)
    bg = _ad_attributes(bg, r, cfg, _drawn_ad_id(r, cfg, bg_cat, gkey), gkey).select(
        F.concat(F.lit("ai-g-"), gkey).alias("event_id"), "user_id",
        (F.col("day_start_s") + _daily_cycle_second(r.uniform("bg_t", gkey))).alias("ts_s"),
        "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface", "media_type",
        "position", "device_type", "user_log_dwell", F.lit(0.0).alias("shift"), "day",
    )

    imps = own.unionByName(burst).unionByName(bg)
    ekey = F.col("event_id")
    imps = imps.withColumn("dwell_ms", _noisy_dwell(r, cfg, ekey, _dwell(r, cfg, ekey, F.col("shift"))))
    ad_impressions = imps.select(
        "event_id", "user_id", F.timestamp_seconds("ts_s").alias("event_ts"), "ad_id", "campaign_id",
        "advertiser_id", "category_id", "semantic_ids", "surface", "media_type", "position", "device_type",
        "dwell_ms",
    )
    return ad_impressions, conversions


def _extra_source_users(user_day: DataFrame, cfg: GeneratorConfig) -> DataFrame:
    """The user-days the organic and page sources are drawn for. Under ``null_control`` their user-level traits
    (activity, dwell scale) are an independent draw from the same distributions, so those sources say nothing about
    the user's conversions through what all sources share: how active a user is (with a user's usual rate known, a
    burst of ad impressions before a conversion stands out) and their dwell scale (against which the planted dwell
    shift before a conversion stands out). Otherwise the user's own traits, as in life."""
    if not cfg.null_control:
        return user_day
    decoy = users(user_day.sparkSession, replace(cfg, seed=cfg.seed + NULL_DECOY_SEED_OFFSET))
    return (user_day.drop("activity", "user_log_dwell")
            .join(decoy.select("user_id", "activity", "user_log_dwell"), "user_id"))


def organic_impressions(user_day: DataFrame, cfg: GeneratorConfig) -> DataFrame:
    r = Draws(cfg.seed + 1)
    uid, day = F.col("user_id"), F.col("day_idx")
    user_day = _extra_source_users(user_day, cfg)
    df = _explode_count(user_day, r.count("n_org", F.col("activity") * cfg.organic_per_user_day, uid, day), "k")
    key = F.concat_ws(":", uid, day, F.col("k"))
    df = df.withColumn("event_id", F.concat(F.lit("oi-"), key))
    df = df.withColumn("ts_s", F.col("day_start_s") + _daily_cycle_second(r.uniform("org_t", key)))
    cat = _viewed_category(r, cfg, "org", uid, F.col("ts_s"), key)
    ekey = F.col("event_id")
    return df.select(
        "event_id", "user_id",
        F.timestamp_seconds("ts_s").alias("event_ts"),
        (cat * CATALOG_STRIDE + r.integer("content", 0, cfg.catalog_items_per_category - 1, key))
        .cast("long").alias("content_id"),
        cat.cast("long").alias("category_id"),
        _noisy_dwell(r, cfg, ekey, _dwell(r, cfg, ekey, F.lit(0.3))).alias("dwell_ms"),
        r.choice("org_media", ("image", "video", "text"), key).alias("media_type"),
        r.integer("org_pos", 1, 100, key).cast("int").alias("position"),
    )


def page_impressions(user_day: DataFrame, cfg: GeneratorConfig) -> DataFrame:
    r = Draws(cfg.seed + 2)
    uid, day = F.col("user_id"), F.col("day_idx")
    user_day = _extra_source_users(user_day, cfg)
    df = _explode_count(user_day, r.count("n_page", F.col("activity") * cfg.pages_per_user_day, uid, day), "k")
    key = F.concat_ws(":", uid, day, F.col("k"))
    df = df.withColumn("ts_s", F.col("day_start_s") + _daily_cycle_second(r.uniform("page_t", key)))
    cat = _viewed_category(r, cfg, "page", uid, F.col("ts_s"), key)
    item = r.integer("page", 0, cfg.catalog_items_per_category - 1, key)
    page_id = cat * CATALOG_STRIDE + item
    return df.select(
        F.concat(F.lit("pi-"), key).alias("event_id"), "user_id",
        F.timestamp_seconds("ts_s").alias("event_ts"),
        page_id.cast("long").alias("page_id"),
        cat.cast("long").alias("category_id"),
        # a function of the page, like an ad's (_ad_attributes)
        F.array(cat * 100 + item % 10, F.lit(10_000) + page_id % 1000).cast("array<long>").alias("semantic_ids"),
        r.choice("page_media", ("page", "profile", "shop"), key).alias("media_type"),
    )


def corrupt(df: DataFrame, source: str, cfg: GeneratorConfig) -> DataFrame:
    """Add exact duplicates and malformed rows; assign the landing partition ``ds``.

    ``ds`` is the UTC date of ``event_ts``, except for rows whose timestamp was deliberately moved
    outside their partition's day. Rows landing outside the generated date range are left out.
    """
    r = Draws(cfg.seed + 3)
    key = F.col("event_id")
    df = df.withColumn("ds", F.date_format("event_ts", "yyyy-MM-dd"))
    dups = df.where(r.uniform(f"dup:{source}", key) < cfg.duplicate_share)
    df = df.unionByName(dups)
    u = r.uniform(f"malformed:{source}", key)  # a function of event_id: duplicates stay exact copies
    kind = F.floor(r.uniform(f"malformed_kind:{source}", key) * 3)
    bad = u < cfg.malformed_share
    has_dwell = "dwell_ms" in df.columns
    df = df.withColumn("user_id", F.when(bad & (kind == 0), F.lit(None).cast("long")).otherwise(F.col("user_id")))
    if has_dwell:
        df = df.withColumn("dwell_ms", F.when(bad & (kind == 1), -F.abs(F.col("dwell_ms")) - 1).otherwise(F.col("dwell_ms")))
    else:
        df = df.withColumn("event_id", F.when(bad & (kind == 1), F.lit(None).cast("string")).otherwise(F.col("event_id")))
    direction = F.when(r.uniform("shift_dir", key) < 0.5, -1).otherwise(1)
    shifted = F.timestamp_seconds(F.unix_seconds("event_ts") + direction * 172_800)
    df = df.withColumn("event_ts", F.when(bad & (kind == 2), shifted).otherwise(F.col("event_ts")))
    dates = _dates(cfg)
    return df.where(F.col("ds").isin(dates))


def generate(spark: SparkSession, cfg: GeneratorConfig) -> dict[str, DataFrame]:
    """All four raw sources (contract columns + ``ds``) and the planted truth, as lazy DataFrames."""
    ud = user_days(spark, cfg).cache()
    truth_df = truth(ud, cfg).cache()
    ads, conv = ad_impressions_and_conversions(ud, cfg)
    out: dict[str, DataFrame] = {}
    sources = {
        "ad_impressions": ads,
        "conversions": conv.drop("pre_logged", "category_source"),
        "organic_impressions": organic_impressions(ud, cfg),
        "page_impressions": page_impressions(ud, cfg),
    }
    for name, df in sources.items():
        schema = RAW_SCHEMAS[name]
        df = df.select([F.col(f.name).cast(f.dataType) for f in schema.fields])
        out[name] = corrupt(df, name, cfg)
    out["truth_engagement"] = truth_df.select([F.col(f.name) for f in TRUTH_ENGAGEMENT.fields])
    # Which conversions were logged before their own impression (for tests of the logging delay), and what
    # chose the converted ad's category: "interest", "preferred" or "shown" (the planted mechanism).
    out["truth_conversions"] = conv.select("event_id", "user_id", "event_ts", "pre_logged", "category_source")
    return out


def write_raw(spark: SparkSession, cfg: GeneratorConfig, raw_root: str, truth_root: str) -> dict[str, int]:
    """Write the sources as Parquet under ``<raw_root>/<source>/ds=...`` and the truth under ``truth_root``.

    Existing partitions for the generated dates are replaced (dynamic partition overwrite).
    """
    frames = generate(spark, cfg)
    counts: dict[str, int] = {}
    for name in RAW_SCHEMAS:
        df = frames[name].repartition(cfg.files_per_partition * cfg.days, "ds", "event_id")
        (df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
         .partitionBy("ds").parquet(f"{raw_root}/{name}"))
        for ds in _dates(cfg):  # each day's partition is complete: the landing job's marker, last
            mark_partition_ready(spark, f"{raw_root}/{name}/ds={ds}")
    for name in ("truth_engagement", "truth_conversions"):
        frames[name].coalesce(4).write.mode("overwrite").parquet(f"{truth_root}/{name}")
    for name in RAW_SCHEMAS:
        counts[name] = spark.read.parquet(f"{raw_root}/{name}").where(F.col("ds").isin(_dates(cfg))).count()
    return counts
