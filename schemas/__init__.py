"""Every table of the product, declared once as a Spark ``StructType``.

Readers, table creation, quality suites and tests import these objects; nothing else spells a schema.
The package itself imports no PySpark: the names below load their module on first use (module
``__getattr__``), so the training side, which has no PySpark, can import ``schemas.ebf``'s names and
constants (``schemas.names``) while the Spark side sees exactly the same objects as before.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "RAW_SCHEMAS": "schemas.raw",
    "RAW_SOURCES": "schemas.raw",
    "REQUIRED_DWELL_SOURCES": "schemas.raw",
    "CLEAN_TABLES": "schemas.tables",
    "QUARANTINE": "schemas.tables",
    "RUN_METRICS": "schemas.tables",
    "TRUTH_ENGAGEMENT": "schemas.tables",
    "USER_SEGMENTS": "schemas.tables",
    "USER_WINDOW_STATS": "schemas.tables",
    "clean_table_name": "schemas.tables",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(module), name)
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
