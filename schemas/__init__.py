"""Every table of the product, declared once as a Spark ``StructType``.

Readers, table creation, quality suites and tests import these objects; nothing else spells a schema.
"""
from schemas.raw import RAW_SCHEMAS, RAW_SOURCES, REQUIRED_DWELL_SOURCES
from schemas.tables import (
    CLEAN_TABLES,
    QUARANTINE,
    RUN_METRICS,
    TRUTH_ENGAGEMENT,
    USER_SEGMENTS,
    USER_WINDOW_STATS,
    clean_table_name,
)

__all__ = [
    "RAW_SCHEMAS",
    "RAW_SOURCES",
    "REQUIRED_DWELL_SOURCES",
    "CLEAN_TABLES",
    "QUARANTINE",
    "RUN_METRICS",
    "TRUTH_ENGAGEMENT",
    "USER_SEGMENTS",
    "USER_WINDOW_STATS",
    "clean_table_name",
]
