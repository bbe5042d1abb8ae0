"""What the serving views hold, as Redis keys and JSON values (pure; the shell writes them).

Every write is an idempotent set (a replayed credit or profile overwrites itself), so views can
be rebuilt from Kafka at any time and a write retried after Redis was down changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PREFIX = "personify"
BEST_CUSTOMERS = f"{PREFIX}:best-customers"
"""Sorted set: person_id scored by lifetime revenue (reporting minor units)."""


def person_key(person_id: str) -> str:
    """String: the person's profile record with their journey."""
    return f"{PREFIX}:person:{person_id}"


def person_credits_key(person_id: str) -> str:
    """Hash: credit_id → the credit record, one per revenue event and model."""
    return f"{PREFIX}:credits:{person_id}"


def report_key(partition: int) -> str:
    """String: the aggregate windows of one person-events partition (summed by readers)."""
    return f"{PREFIX}:aggregates:{partition}"


@dataclass(frozen=True, slots=True)
class ViewWrite:
    """One idempotent Redis write: `SET key value`, `HSET key field value` or `ZADD key score`."""

    op: str
    key: str
    value: bytes | float
    field: str = ""

    @property
    def slot(self) -> tuple[str, str]:
        """Writes to the same slot replace each other; only the latest needs to reach Redis."""
        return (self.key, self.field)


def queue_write(pipeline: Any, write: ViewWrite) -> None:
    """Queue `write` on a Redis pipeline (sync or asyncio: both queue commands the same way)."""
    if write.op == "set":
        pipeline.set(write.key, write.value)
    elif write.op == "hset":
        pipeline.hset(write.key, write.field, write.value)
    else:
        pipeline.zadd(write.key, {write.field: write.value})


def profile_writes(profile: dict[str, Any]) -> list[ViewWrite]:
    person_id = profile["person_id"]
    return [ViewWrite("set", person_key(person_id), orjson.dumps(profile)),
            ViewWrite("zadd", BEST_CUSTOMERS, float(profile["lifetime_revenue_minor"]),
                      field=person_id)]


def credit_writes(credit: dict[str, Any]) -> list[ViewWrite]:
    return [ViewWrite("hset", person_credits_key(credit["person_id"]), orjson.dumps(credit),
                      field=credit["credit_id"])]


def aggregate_writes(partition: int, windows: dict[str, Any]) -> list[ViewWrite]:
    return [ViewWrite("set", report_key(partition), orjson.dumps(windows))]
