"""The touchpoint: a page view that starts a visit, classified into a channel (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

in_event_time = attrgetter("ts", "event_id")
"""`(ts, event_id)` of a touch, fact or event: the order every rule reads them in (a sort key
run in C, as it is applied to whole histories on every step)."""


@dataclass(frozen=True, slots=True)
class Touch:
    """One visit start. `ts` is epoch milliseconds; `campaign` is None when absent."""

    event_id: str
    ts: int
    anonymous_id: str
    channel: str
    source: str
    medium: str
    campaign: str | None = None
