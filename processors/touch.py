"""The touchpoint: a page view that starts a visit, classified into a channel (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass


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
