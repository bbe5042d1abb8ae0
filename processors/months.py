"""Calendar months in UTC, as `YYYY-MM`: the month an event time falls in, and month arithmetic.

A rule of the worker (the aggregates key each MRR movement by its month) that the read models
share (the MRR bridge, retention cohorts).
"""

from __future__ import annotations

from datetime import UTC, datetime


def month_of(ts_ms: int) -> str:
    """`YYYY-MM` of an epoch-milliseconds time, in UTC."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m")


def add_months(month: str, months: int) -> str:
    """The `YYYY-MM` that is `months` calendar months after `month` (before it if negative)."""
    year, index = divmod(int(month[:4]) * 12 + int(month[5:]) - 1 + months, 12)
    return f"{year:04d}-{index + 1:02d}"


def months_between(first: str, last: str) -> int:
    """How many calendar months `last` is after `first` (negative when it is before)."""
    return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:])
