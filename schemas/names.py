"""Column names and constants of the contracts that need no Spark: importable on the training side, whose
environment has no PySpark (``schemas.ebf`` builds on these; ``schemas.raw`` checks them against its
``StructType``)."""
from __future__ import annotations

# The raw sources, one folder each under ``paths.raw_root`` (``schemas.raw.RAW_SCHEMAS`` declares their columns
# and asserts the same names in the same order).
RAW_SOURCE_NAMES: tuple[str, ...] = ("ad_impressions", "conversions", "organic_impressions", "page_impressions")
# Sources every deployment must have: the windowed statistic (eqs. 1, 6-8) is ad impressions labelled by
# conversions, and every training example is an ad impression. ``paths.required_sources`` must name them;
# it chooses whether organic and page impressions are required too (by default they are optional).
STATISTICS_SOURCES: tuple[str, ...] = ("ad_impressions", "conversions")

# The 11 attributes of the ad-impression EBF: every column of the raw ``ad_impressions`` contract but
# event_id and user_id, in the contract's order (schemas/raw.py asserts that they are exactly that).
AD_EBF_ATTRIBUTES: tuple[str, ...] = (
    "event_ts", "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface",
    "media_type", "position", "device_type", "dwell_ms",
)
