"""Touch watermarks: how far in event time the touchpoint path has been fully delivered.

Billing reaches the person stage by a shorter path than touchpoints (which are stitched on the
device stage first), so in a replay a payment can overtake the touches that precede it. The
validating stage marks, per input partition of page views and signups, the newest event time it
has forwarded; the marks travel *behind* the forwarded events through every device partition to
every person partition, so when a person partition's watermark reaches `t`, every touch with
event time ≤ `t` (from partitions written in time order) has already arrived there.

A partition with no backlog does not hold the watermark back (`None`), so live traffic and the
end of a replay release everything; a partition not heard of yet holds it at `NOT_YET`.

Marks are only as good as the moment they were taken: "idle" said before a billing event was
validated says nothing about touches produced just before it. So every watermark carries
`fresh_ms`, the wall-clock time of its oldest mark, and a billing event validated at `t` only
trusts a watermark with `fresh_ms ≥ t`. An "idle" mark is as old as the fetch response that
showed the partition's end, not as the moment it was written down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NOT_YET = -(2**62)
"""Watermark while some input partition is not known yet: every billing event waits."""
END_OF_TIME = 2**62
"""Watermark when no input partition has a backlog: nothing needs to wait."""

Marks = Mapping[str, int | None]
"""Per input partition (`"topic:partition"`), the newest forwarded event time, None when idle."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """Touches with event time ≤ `upto_ms` have arrived, as known at wall-clock `fresh_ms`."""

    upto_ms: int
    fresh_ms: int

    def passed(self, event_ts: int, validated_at_ms: int) -> bool:
        """Whether an event validated at `validated_at_ms` has all its earlier touches here."""
        return event_ts <= self.upto_ms and validated_at_ms <= self.fresh_ms


NO_WATERMARK = Watermark(NOT_YET, NOT_YET)
ANY_TIME = Watermark(END_OF_TIME, END_OF_TIME)
"""Lets everything through: used when the watermark has stalled."""


def input_mark(newest_ts: int | None, position: int | None, highwater: int | None) -> int | None:
    """The mark of one input partition: None (idle) when fully consumed, else its newest time."""
    if highwater is not None and position is not None and position >= highwater:
        return None
    return NOT_YET if newest_ts is None else newest_ts


def low_watermark(marks: Marks, expected_partitions: int) -> int:
    """The least mark over all `expected_partitions` input partitions; idle ones do not count."""
    if len(marks) < expected_partitions:
        return NOT_YET
    busy = [mark for mark in marks.values() if mark is not None]
    return min(busy) if busy else END_OF_TIME


def person_watermark(views: Mapping[int, Watermark], device_partitions: int) -> Watermark:
    """A person partition's watermark: the least of the views of all device partitions, each
    the `low_watermark` that device partition forwarded last, with its freshness."""
    if len(views) < device_partitions:
        return NO_WATERMARK
    return Watermark(min(w.upto_ms for w in views.values()),
                     min(w.fresh_ms for w in views.values()))
