"""The ``ebf_examples`` contract: one training example per clean ad impression and experiment arm (policy).

Everything a loader reads is a number: ids are hashed to integers here, once, reproducibly, so neither
Petastorm nor the model parses strings. Layout of one example (partitioned by ``ds``, ``policy``,
``segment``; Delta partition values live in the path, not in the data files):

- ``user_id``, ``event_ts_us`` (the impression time t, microseconds), ``label`` (0/1),
  ``segment_window_end_us`` (end of the window whose segment this example uses; null when none);
- target ad: ``tgt_<attr>`` for :data:`TARGET_ATTRIBUTES` (ints; the target's own dwell is not a feature:
  it is only known after the impression);
- EBF sequences, one per source: ``<src>_seq_<attr>`` (array<int>, most recent event first, padded with 0
  to the source's fixed length from conf) and ``<src>_len`` (int, events before padding). Only events
  strictly before t are in a sequence.

A removed attribute (policy ``remove_*``) or a source not given to a segment (``baseline`` has no
organic/page EBF) is a null column in that partition: nothing is stored and the loader does not read it.

Integer encoding (:func:`encode`, :func:`hashed_id` and :func:`age_bucket` in ``dynamix_spark.ebf`` implement it in
Spark; documented here):
- categorical values: ``1 + pmod(xxhash64('<attr>', value), 2^31 - 1)`` (Spark's xxhash64, seed 42);
  ``semantic_ids`` hashes the whole array; 0 is padding/null;
- ``dwell_ms``: ``1 + min(63, floor(4 ln(dwell_ms)))`` (quarter-nat buckets of log dwell);
- ``position``: ``1 + min(position, 999)``;
- ``event_ts`` in a sequence: the age at t, ``1 + min(40, floor(log2(1 + (t - event_ts) seconds)))``;
- ``tgt_hour``: ``1 + hour of day (UTC)`` of t.
"""
from __future__ import annotations

from schemas.names import AD_EBF_ATTRIBUTES, clean_table_name  # no pyspark: the training side imports this module

# Per source: the EBF attributes (paper section 3.3). The ad source has the contract's 11 attributes. An attribute
# of the same name is encoded the same way in every source and in the target (the hash is salted by the
# attribute's name), so ``category_id`` in the organic and page sequences is comparable with ``tgt_category_id``.
EBF_SOURCES: dict[str, tuple[str, ...]] = {
    "ad": AD_EBF_ATTRIBUTES,
    "organic": ("content_id", "category_id", "dwell_ms", "media_type", "position", "event_ts"),
    "page": ("page_id", "category_id", "semantic_ids", "media_type", "event_ts"),
}
# Clean table each source is read from.
EBF_SOURCE_TABLES: dict[str, str] = {
    "ad": clean_table_name("ad_impressions"),
    "organic": clean_table_name("organic_impressions"),
    "page": clean_table_name("page_impressions"),
}
# Target-ad features: the ad's attributes known when it is shown, plus the hour of day.
TARGET_ATTRIBUTES: tuple[str, ...] = (
    "ad_id", "campaign_id", "advertiser_id", "category_id", "semantic_ids", "surface", "media_type",
    "position", "device_type", "hour",
)
# Numeric attributes bucketized (not hashed); everything else is hashed.
NUMERIC_ATTRIBUTES: tuple[str, ...] = ("dwell_ms", "position", "event_ts", "hour")


def seq_col(source: str, attr: str) -> str:
    return f"{source}_seq_{attr}"


def len_col(source: str) -> str:
    return f"{source}_len"


def tgt_col(attr: str) -> str:
    return f"tgt_{attr}"


ALL_SEQ_COLUMNS: tuple[str, ...] = tuple(seq_col(s, a) for s, attrs in EBF_SOURCES.items() for a in attrs)
LEN_COLUMNS: tuple[str, ...] = tuple(len_col(s) for s in EBF_SOURCES)
TARGET_COLUMNS: tuple[str, ...] = tuple(tgt_col(a) for a in TARGET_ATTRIBUTES)
META_COLUMNS: tuple[str, ...] = ("user_id", "event_ts_us", "label", "segment_window_end_us")
PARTITION_COLUMNS: tuple[str, ...] = ("ds", "policy", "segment")

# Source names a policy may give a segment: a source, or "ad_reduced" (the ad EBF without the
# low-importance attributes listed in conf).
POLICY_SOURCES: tuple[str, ...] = ("ad", "ad_reduced", "organic", "page")


def present_columns(sources: tuple[str, ...], low_importance: tuple[str, ...]) -> tuple[str, ...]:
    """Sequence columns that carry data for a segment given ``sources`` (a policy's list for it)."""
    cols: list[str] = []
    for s in sources:
        if s == "ad_reduced":
            cols += [seq_col("ad", a) for a in EBF_SOURCES["ad"] if a not in low_importance]
        else:
            cols += [seq_col(s, a) for a in EBF_SOURCES[s]]
    return tuple(c for c in ALL_SEQ_COLUMNS if c in set(cols))


def _schema_json() -> dict:
    """The table's schema in Spark's JSON form (``StructType.jsonValue()``, also Delta's ``schemaString``),
    spelled without PySpark so that the training side can use it too."""
    int_array = {"type": "array", "elementType": "integer", "containsNull": True}
    fields = [("user_id", "long", False), ("event_ts_us", "long", False), ("label", "integer", False),
              ("segment_window_end_us", "long", True)]
    fields += [(c, "integer", False) for c in TARGET_COLUMNS]
    fields += [(c, int_array, True) for c in ALL_SEQ_COLUMNS]
    fields += [(c, "integer", False) for c in LEN_COLUMNS]
    fields += [("ds", "string", False), ("policy", "string", False), ("segment", "integer", False)]
    return {"type": "struct",
            "fields": [{"name": n, "type": t, "nullable": nullable, "metadata": {}} for n, t, nullable in fields]}


EBF_EXAMPLES_JSON: dict = _schema_json()
EBF_EXAMPLES_COLUMNS: tuple[str, ...] = tuple(f["name"] for f in EBF_EXAMPLES_JSON["fields"])


def _spark_schema():
    from pyspark.sql.types import StructType

    return StructType.fromJson(EBF_EXAMPLES_JSON)


def __getattr__(name: str):
    """``EBF_EXAMPLES``, the table's Spark ``StructType``, built on first use: the names and constants above
    import without PySpark (the training environment has none); the Spark side sees the same object."""
    if name == "EBF_EXAMPLES":
        schema = globals()["EBF_EXAMPLES"] = _spark_schema()
        return schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
