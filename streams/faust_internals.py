"""Every use of a private attribute of Faust (or of its Kafka client), each with its reason.

Checked against faust-streaming 0.15.3 (pinned in pyproject.toml); on an upgrade, read each
function again against the new version. A test (tests/unit/test_faust_internals.py) keeps
private attributes of other objects out of the rest of `streams/`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The group's committed offset of `tp` as the consumer knows it (from the assignment,
    then from each commit; None when the group has none: it starts from the earliest). Faust
    keeps it in `Consumer._committed_offset`; there is no public getter, and asking the broker
    would be a round trip per take."""
    return app.consumer._committed_offset.get(tp)


def report_gaps_instead_of_skipping(
        app: faust.App, on_gap: Callable[[Any, int, int], Awaitable[None]]) -> None:
    """Make `on_gap(tp, offset_from, offset_to)` what the consumer calls when two records it
    delivers are not consecutive. Faust's own `Consumer._add_gap` marks the offsets between as
    done, so its commit moves past them; it has no switch to turn that off."""
    app.consumer._add_gap = on_gap


def set_current_event(stream: faust.StreamT, event: faust.EventT) -> None:
    """Make `event` the current event of `stream` and of the running context, as Faust does
    before it hands an event over (`Stream._set_current_event`): the RocksDB store files a
    write under the current event's partition, and Faust has no public way to say which
    partition a store write belongs to."""
    stream._set_current_event(event)


def keys_in(table: faust.Table) -> int:
    """Keys in the table's active partitions; RocksDB's own estimate where it is the store:
    counting them would scan every key and stop the streams for seconds at a million persons.
    Faust's RocksDB store lists its open databases only privately
    (`Store._dbs_for_actives`)."""
    active_dbs = getattr(table.data, "_dbs_for_actives", None)
    if active_dbs is None:  # the in-memory store
        return len(table)
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in active_dbs())
