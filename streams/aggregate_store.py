"""Rolling aggregates per person-events partition, kept in memory and mirrored to a table.

The table key starts with the partition (DESIGN.md §9), and records are written from the
stream of that very partition, so changelog records land where the key's owner restores them.
A whole aggregate is large, so each fold rewrites only the small records it changed: one per
(partition, hour or "all", measure group), where a group is a measure (or one model's
attributed revenue).

Exactly once across crashes: the persons' states are written after the aggregate, and the
aggregate remembers the last person-events offset it folded, so a record replayed after a crash
is folded once whichever of the writes survived.
`fold` returns the deliveries of its changelog records, which the stage awaits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable
from functools import cache

import faust
import orjson

from processors.aggregates import (
    ATTRIBUTED,
    Aggregate,
    AggregateConfig,
    CellKey,
    Cells,
    bucket_changes,
    fold_many,
)
from streams.state_cache import delete, write

ALL = "all"


@cache  # cell keys are few (measures × labels) and parsing them is the cost of a fold
def _group(key: str) -> str:
    cell = CellKey.parse(key)
    return f"{cell.measure}|{cell.qualifier}" if cell.measure == ATTRIBUTED else cell.measure


def _grouped(cells: Cells) -> dict[str, dict[str, int]]:
    groups: dict[str, dict[str, int]] = defaultdict(dict)
    for key, value in cells.items():
        groups[_group(key)][key] = value
    return groups


class AggregateStore:
    def __init__(self, table: faust.Table, config: AggregateConfig) -> None:
        self._table = table
        self._config = config
        self._states: dict[int, Aggregate] = {}
        self._folded: dict[int, int] = {}

    def state(self, partition: int) -> Aggregate:
        if partition not in self._states:
            self._states[partition] = self._load(partition)
        return self._states[partition]

    def fold(self, partition: int, records: list[tuple[int, list]]) -> list[Awaitable]:
        """Fold the outputs of the person steps of each `(offset, outputs)` record in, those
        not folded before; call from the stream of `partition`. The changelog deliveries."""
        before = self.state(partition)
        folded = self._folded.get(partition, -1)
        fresh = [(offset, outputs) for offset, outputs in records if offset > folded]
        if not fresh:
            return []
        offset = max(offset for offset, _ in fresh)
        after = fold_many(before, [o for _, outputs in fresh for o in outputs], self._config)
        if after is before:
            return []
        sent: list[Awaitable | None] = []
        changes = bucket_changes(before, after)
        for hour, cells in changes.written.items():
            sent += self._write(partition, str(hour), before.buckets.get(hour, {}), cells)
        for hour in changes.dropped:
            for group in _grouped(before.buckets[hour]):
                sent.append(delete(self._table, partition,
                                   f"{partition}|{hour}|{group}".encode()))
        sent += self._write(partition, ALL, before.all_time, after.all_time)
        self._folded[partition] = offset
        sent.append(write(self._table, partition, f"{partition}|head".encode(),
                          orjson.dumps({"clock": after.clock_ms, "offset": offset})))
        self._states[partition] = after
        return [delivery for delivery in sent if delivery is not None]

    def keep_only(self, partitions: set[int]) -> list[Aggregate]:
        """The aggregates of the partitions this worker owns now; forget the others (another
        worker continues them, and they are reloaded from the table if they come back)."""
        for partition in set(self._states) - partitions:
            del self._states[partition]
            self._folded.pop(partition, None)
        return [self.state(partition) for partition in sorted(partitions)]

    def _write(self, partition: int, scope: str, before: Cells, after: Cells) -> list[Awaitable]:
        old = _grouped(before)
        return [write(self._table, partition, f"{partition}|{scope}|{group}".encode(),
                      orjson.dumps(cells))
                for group, cells in _grouped(after).items() if old.get(group) != cells]

    def _load(self, partition: int) -> Aggregate:
        prefix = f"{partition}|".encode()
        clock, all_time, buckets = None, {}, defaultdict(dict)
        for key, value in self._table.items():
            if not key.startswith(prefix):
                continue
            parts = key.decode().split("|", 2)
            if parts[1] == "head":
                head = orjson.loads(value)
                clock = head["clock"]
                self._folded[partition] = head["offset"]
            elif parts[1] == ALL:
                all_time.update(orjson.loads(value))
            else:
                buckets[int(parts[1])].update(orjson.loads(value))
        return Aggregate(clock, all_time, dict(buckets))
