"""The calendar of the partition key ``ds`` ('YYYY-MM-DD', the UTC date of ``event_ts``): the one place that
turns a day into other days or into times.

Pure Python (no PySpark), so every side imports it: the jobs (a backfill's days, a job's lookback), the library
(neighbouring partitions, the previous day a drift check compares with, the generator's days), the suites
(``schemas.expectations``: a day's timestamp bounds) and the training side. It sits in ``schemas/``, the lowest
floor, because the suites use it and may import nothing above ``schemas/``.
"""
from __future__ import annotations

import datetime as dt


def check_ds(ds: str) -> str:
    """``ds`` as 'YYYY-MM-DD', or ValueError for anything that is not a date."""
    return dt.date.fromisoformat(ds).isoformat()


def add_days(ds: str, days: int) -> str:
    """The day ``days`` after ``ds`` (before it for a negative number)."""
    return (dt.date.fromisoformat(ds) + dt.timedelta(days=days)).isoformat()


def previous_day(ds: str) -> str:
    return add_days(ds, -1)


def days_around(ds: str, before: int, after: int) -> list[str]:
    """The ``before`` days before ``ds``, ``ds`` and the ``after`` days after it, in order."""
    return [add_days(ds, k) for k in range(-before, after + 1)]


def neighbour_days(ds: str) -> list[str]:
    """``ds - 1``, ``ds``, ``ds + 1``: the partitions that can hold a day's events (late or early logging)."""
    return days_around(ds, 1, 1)


def days_from(start: str, count: int) -> list[str]:
    """``count`` consecutive days from ``start`` (none for ``count`` <= 0)."""
    return [add_days(start, k) for k in range(count)]


def date_range(start: str, until: str | None = None) -> list[str]:
    """Every day from ``start`` to ``until`` inclusive (``start`` alone without ``until``); ValueError when
    ``until`` is before ``start``."""
    a = dt.date.fromisoformat(start)
    b = dt.date.fromisoformat(until) if until else a
    if b < a:
        raise ValueError(f"{until} is before {start}")
    return days_from(a.isoformat(), (b - a).days + 1)


def day_bounds(ds: str, tolerance_s: int = 0) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the day ``ds`` (naive, UTC) widened by ``tolerance_s`` on both sides."""
    start = dt.datetime.fromisoformat(ds)
    return start - dt.timedelta(seconds=tolerance_s), start + dt.timedelta(days=1, seconds=tolerance_s)
