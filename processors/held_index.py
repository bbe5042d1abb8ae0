"""Which persons' waiting billing a touch watermark lets through, without looking at the rest.

A person's held billing goes ahead once the watermark has passed the event time of its oldest
held event *and* is fresh enough for the moment that event was validated (watermarks.py). A
watermark moves many times a second; stepping every waiting person on each move would cost
more than the events themselves while a large backlog waits. So the index keeps two heaps:
by event time, and, for those the watermark has passed but is not yet fresh enough for, by
validation time. Entries replaced or discarded are skipped when they surface.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from processors.watermarks import Watermark


@dataclass(frozen=True, slots=True, order=True)
class Waiting:
    """What a person's oldest held billing event waits for."""

    event_ts: int
    validated_at_ms: int


class HeldIndex:
    def __init__(self, waiting: Mapping[bytes, Waiting]) -> None:
        self._waiting = dict(waiting)
        self._by_time = [(w.event_ts, key, w) for key, w in self._waiting.items()]
        self._by_freshness: list[tuple[int, bytes, Waiting]] = []
        heapq.heapify(self._by_time)

    def __len__(self) -> int:
        return len(self._waiting)

    def set(self, key: bytes, waiting: Waiting) -> None:
        if self._waiting.get(key) != waiting:
            self._waiting[key] = waiting
            heapq.heappush(self._by_time, (waiting.event_ts, key, waiting))

    def discard(self, key: bytes) -> None:
        self._waiting.pop(key, None)

    def due(self, watermark: Watermark) -> list[bytes]:
        """Take out the persons `watermark` lets through; those still waiting after their
        step are `set` again."""
        due: list[bytes] = []
        while self._by_freshness and self._by_freshness[0][0] <= watermark.fresh_ms:
            _, key, waiting = heapq.heappop(self._by_freshness)
            if self._waiting.get(key) == waiting:
                heapq.heappush(self._by_time, (waiting.event_ts, key, waiting))
        while self._by_time and self._by_time[0][0] <= watermark.upto_ms:
            _, key, waiting = heapq.heappop(self._by_time)
            if self._waiting.get(key) != waiting:
                continue
            if waiting.validated_at_ms <= watermark.fresh_ms:
                del self._waiting[key]
                due.append(key)
            else:
                heapq.heappush(self._by_freshness, (waiting.validated_at_ms, key, waiting))
        return due
