"""The raw-log contract: four sources landing as Parquet under ``<raw_root>/<source>/ds=YYYY-MM-DD/``.

``ds`` is the UTC date of ``event_ts``. Column names and types are the product's public contract.
"""
from pyspark.sql.types import (
    ArrayType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas.names import AD_EBF_ATTRIBUTES, RAW_SOURCE_NAMES


def _f(name: str, dtype, nullable: bool = True) -> StructField:
    return StructField(name, dtype, nullable)


# The 11 attributes of the ad-impression EBF are every column but event_id and user_id.
AD_IMPRESSIONS = StructType([
    _f("event_id", StringType()),
    _f("user_id", LongType()),
    _f("event_ts", TimestampType()),
    _f("ad_id", LongType()),
    _f("campaign_id", LongType()),
    _f("advertiser_id", LongType()),
    _f("category_id", LongType()),
    _f("semantic_ids", ArrayType(LongType())),
    _f("surface", StringType()),
    _f("media_type", StringType()),
    _f("position", IntegerType()),
    _f("device_type", StringType()),
    _f("dwell_ms", LongType()),
])

CONVERSIONS = StructType([
    _f("event_id", StringType()),
    _f("user_id", LongType()),
    _f("event_ts", TimestampType()),  # when the conversion was logged
    _f("ad_id", LongType()),  # nullable: not every conversion is attributed to an ad
    _f("conversion_type", StringType()),  # click, like, share, comment, purchase
])

ORGANIC_IMPRESSIONS = StructType([
    _f("event_id", StringType()),
    _f("user_id", LongType()),
    _f("event_ts", TimestampType()),
    _f("content_id", LongType()),
    _f("category_id", LongType()),  # the content's taxonomy category, in the ads' category_id vocabulary
    _f("dwell_ms", LongType()),
    _f("media_type", StringType()),
    _f("position", IntegerType()),
])

PAGE_IMPRESSIONS = StructType([
    _f("event_id", StringType()),
    _f("user_id", LongType()),
    _f("event_ts", TimestampType()),
    _f("page_id", LongType()),
    _f("category_id", LongType()),  # the page's taxonomy category, in the ads' category_id vocabulary
    _f("semantic_ids", ArrayType(LongType())),
    _f("media_type", StringType()),
])

RAW_SCHEMAS: dict[str, StructType] = {
    "ad_impressions": AD_IMPRESSIONS,
    "conversions": CONVERSIONS,
    "organic_impressions": ORGANIC_IMPRESSIONS,
    "page_impressions": PAGE_IMPRESSIONS,
}
RAW_SOURCES: tuple[str, ...] = tuple(RAW_SCHEMAS)
assert RAW_SOURCES == RAW_SOURCE_NAMES, RAW_SOURCES  # the Spark-free copy in schemas/names.py

# Spelled out in schemas/names.py (no Spark there, for the training side); they are the contract's columns.
assert AD_EBF_ATTRIBUTES == tuple(
    f.name for f in AD_IMPRESSIONS.fields if f.name not in ("event_id", "user_id")
), AD_EBF_ATTRIBUTES
assert len(AD_EBF_ATTRIBUTES) == 11, AD_EBF_ATTRIBUTES

# Columns a file may lack (added to the contract after producers started landing it): such a file reads them as
# null, i.e. "not known", and nothing else changes; every other contract column is required in every file.
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "organic_impressions": frozenset({"category_id"}),
    "page_impressions": frozenset({"category_id"}),
}
assert all(c in RAW_SCHEMAS[s].fieldNames() for s, cols in OPTIONAL_COLUMNS.items() for c in cols)

# Keys that must be non-null in every source, and sources whose rows need a valid dwell.
KEY_COLUMNS: tuple[str, ...] = ("event_id", "user_id", "event_ts")
REQUIRED_DWELL_SOURCES: tuple[str, ...] = ("ad_impressions", "organic_impressions")
CONVERSION_TYPES: tuple[str, ...] = ("click", "like", "share", "comment", "purchase")
