"""Column names and constants of the contracts that need no Spark: importable on the training side, whose
environment has no PySpark (``schemas.ebf`` builds on these; ``schemas.raw`` checks them against its
``StructType``)."""
from __future__ import annotations

# The 11 attributes of the ad-impression EBF: every column of the raw ``ad_impressions`` contract but
# event_id and user_id, in the contract's order (schemas/raw.py asserts that they are exactly that).
AD_EBF_ATTRIBUTES: tuple[str, ...] = (
    "event_ts", "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface",
    "media_type", "position", "device_type", "dwell_ms",
)
