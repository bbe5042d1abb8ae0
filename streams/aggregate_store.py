"""Rolling aggregates per person-events partition, kept in memory and mirrored to a table.

The table key starts with the partition, and records are written for the changelog partition
of that very partition, so changelog records land where the key's owner restores them. A whole
aggregate is large, so each fold rewrites only the small records it changed: one per
(partition, hour or "all", measure group), where a group is a measure (or one model's
attributed revenue), and last a head holding the clock and the last person-events offset
folded.

Exactly once across crashes. The persons' states are written after the aggregate (a person
state that survived makes its re-read input measure nothing), and a record replayed after a
crash is folded only if it is past the head's offset. A crash can cut a fold's writes short,
leaving some group records ahead of the head: each group record carries the offset it was
folded to and its cells before that fold, so a load rolls such records back to what the head
stands for, and the replay folds them once. `fold` adds its records to the stage's table writes
(streams/state_cache.py), which reach the changelog in the order they were added.
"""

from __future__ import annotations

from collections import defaultdict
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
from streams.state_cache import CachedStates, TableWrites, TakenPartitions

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

    def fold(self, partition: int, records: list[tuple[int, list]], writes: TableWrites) -> None:
        """Fold the outputs of the person steps of each `(offset, outputs)` record in, those
        not folded before, and add the changed table records to `writes`."""
        before = self.state(partition)
        folded = self._folded.get(partition, -1)
        fresh = [(offset, outputs) for offset, outputs in records if offset > folded]
        if not fresh:
            return
        offset = max(offset for offset, _ in fresh)
        after = fold_many(before, [o for _, outputs in fresh for o in outputs], self._config)
        if after is before:
            return
        changes = bucket_changes(before, after)
        for hour, cells in changes.written.items():
            self._write(writes, partition, offset, str(hour), before.buckets.get(hour, {}),
                        cells)
        for hour in changes.dropped:
            for group in _grouped(before.buckets[hour]):
                writes.delete(self._table, partition, f"{partition}|{hour}|{group}".encode())
        self._write(writes, partition, offset, ALL, before.all_time, after.all_time)
        self._folded[partition] = offset
        writes.put(self._table, partition, f"{partition}|head".encode(),
                   orjson.dumps({"clock": after.clock_ms, "offset": offset}))
        self._states[partition] = after

    def keep_only(self, partitions: set[int]) -> list[Aggregate]:
        """The aggregates of the partitions this worker owns now; forget the others (another
        worker continues them, and they are reloaded from the table if they come back)."""
        for partition in set(self._states) - partitions:
            del self._states[partition]
            self._folded.pop(partition, None)
        return [self.state(partition) for partition in sorted(partitions)]

    def _write(self, writes: TableWrites, partition: int, offset: int, scope: str,
               before: Cells, after: Cells) -> None:
        old = _grouped(before)
        for group, cells in _grouped(after).items():
            if old.get(group) != cells:
                record = {"offset": offset, "cells": cells, "before": old.get(group, {})}
                writes.put(self._table, partition, f"{partition}|{scope}|{group}".encode(),
                           orjson.dumps(record))

    def _load(self, partition: int) -> Aggregate:
        prefix = f"{partition}|".encode()
        head: dict = {"clock": None, "offset": -1}
        groups: list[tuple[str, dict]] = []
        for key, value in self._table.items():
            if key.startswith(prefix):
                scope = key.decode().split("|", 2)[1]
                if scope == "head":
                    head = orjson.loads(value)
                else:
                    record = orjson.loads(value)
                    if "cells" not in record:  # written before records carried their offset
                        record = {"offset": -1, "cells": record}
                    groups.append((scope, record))
        all_time: dict[str, int] = {}
        buckets: defaultdict[int, dict[str, int]] = defaultdict(dict)
        for scope, record in groups:
            cells = record["cells"] if record["offset"] <= head["offset"] else record["before"]
            (all_time if scope == ALL else buckets[int(scope)]).update(cells)
        self._folded[partition] = head["offset"]
        return Aggregate(head["clock"], all_time,
                         {hour: cells for hour, cells in buckets.items() if cells})


async def fold_then_store(store: AggregateStore, folds: dict[int, list[tuple[int, list]]],
                          states: CachedStates, changed: dict, taken: TakenPartitions) -> None:
    """A take's aggregate records, then its keys' states: a state that survives a crash makes
    its re-read input a duplicate that measures nothing, so what it measured must already be
    folded."""
    folded, stepped = TableWrites(), TableWrites()
    for partition, records in folds.items():
        store.fold(partition, records, folded)
    await folded.apply(taken)
    states.put_all(changed, stepped)
    await stepped.apply(taken)
