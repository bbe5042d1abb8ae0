"""Customers as the reports see them: the converted persons among the current profiles.

A **customer** is a person whose latest `profile/1` record has a `conversion_ts`; their channel
is the profile's `acquisition_channel` (Unattributed for an empty journey) and their segment
the profile's current `segment`. Shared by the report's tables and the retention cohorts, so
both count the same people the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from processors.channels import UNATTRIBUTED
from processors.segments import SEGMENTS

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Customer:
    person_id: str
    acquisition_channel: str
    segment: str
    revenue_minor: int
    mrr_minor: int
    first_touch_ts: int | None
    conversion_ts: int
    mrr_movements: tuple[tuple[int, str, int], ...] = ()
    """(ts, kind, signed delta) of the MRR movements counted for the customer."""

    @property
    def conversion_ms(self) -> int | None:
        """First touch to conversion; None without a first touch at or before conversion."""
        if self.first_touch_ts is None or self.first_touch_ts > self.conversion_ts:
            return None
        return self.conversion_ts - self.first_touch_ts


def customers_of(profiles: Iterable[Mapping[str, Any]]) -> tuple[Customer, ...]:
    """The converted persons among current profiles, in person id order."""
    return tuple(sorted(
        (Customer(person_id=p["person_id"],
                  acquisition_channel=p["acquisition_channel"] or UNATTRIBUTED,
                  segment=p["segment"], revenue_minor=p["lifetime_revenue_minor"],
                  mrr_minor=p["mrr_minor"], first_touch_ts=p["first_touch_ts"],
                  conversion_ts=p["conversion_ts"],
                  mrr_movements=tuple((m["ts"], m["kind"], m["delta_minor"])
                                      for m in p.get("mrr_movements", ())))
         for p in profiles if p["conversion_ts"] is not None),
        key=lambda c: c.person_id))


def group_by(customers: Iterable[Customer],
             key: Callable[[Customer], Key]) -> dict[Key, list[Customer]]:
    """Customers by `key`, each group in the input's order."""
    groups: dict[Key, list[Customer]] = defaultdict(list)
    for customer in customers:
        groups[key(customer)].append(customer)
    return dict(groups)


def top_count(customers: int, percent: int) -> int:
    """⌈percent % of customers⌉: the top share never rounds down to fewer people."""
    return -(-customers * percent // 100)


def segment_order(segment: str) -> tuple[int, str]:
    """Known segments in their declared order (SMB first), then any other by name."""
    return (SEGMENTS.index(segment), "") if segment in SEGMENTS else (len(SEGMENTS), segment)
