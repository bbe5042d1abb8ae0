"""The table writes of a stage, in the order that survives a crash; and a table of versioned
JSON states with the decoded states of recently used keys in memory.

A stage's changes reach the changelog before the local store, and both before the stage takes
its next input (so before its inputs are committed). A local store is therefore never ahead of
the changelog: a worker killed half-way re-reads its input, steps the state it restored and
sends everything again, and whoever restores from the changelog alone (a worker taking the
partitions over, or the in-memory store) sees every change the committed inputs made. Written
the other way round, a restarted worker would find the change in its local store, take the
re-read input for a duplicate and never send the change to the changelog, which a takeover
then misses for good. Faust sends table changes from a buffer that its commit flushes only
while it keeps moving (it gives up after 0.1 s), so the stage awaits the deliveries itself.

Decoding a person's state (journey, frozen weights as exact fractions, payments) costs more
than the step that uses it, and a person or device is often stepped again soon. The table stays
the only durable copy: every write goes to it (and its changelog); the cache only spares
decoding what this process wrote or read a moment ago. It is emptied whenever partitions move,
so a state is never served from memory for a key another worker may have changed.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import faust
import orjson

from streams.faust_internals import set_current_event

T = TypeVar("T")


class TakenPartitions:
    """Table writes after a take of several records. Faust's RocksDB store files a write under
    the partition of the current event, which a take leaves unset (and a read made while one is
    set looks in that partition only). A write for `partition` runs in a copy of the context
    with a taken event of that partition as the current one, so nothing leaks into later reads
    of the stage; the stream's own note of its current event, which its background reader
    uses, is put back at once. (Faust has no public way to say which partition a store write
    belongs to.)"""

    def __init__(self, stream: faust.StreamT, events: list[faust.EventT]) -> None:
        self._stream = stream
        self._events = {event.message.partition: event for event in events}

    def write(self, partition: int, write: Callable[[], T]) -> T:
        """`write()` (synchronous) as if processing an event of `partition`."""
        def as_in_partition() -> T:
            set_current_event(self._stream, self._events[partition])
            return write()

        before = self._stream.current_event
        try:
            return contextvars.copy_context().run(as_in_partition)
        finally:
            self._stream.current_event = before


class TableWrites:
    """The table changes of one take, applied in the order that survives a crash (see the
    module's docstring): `apply` sends them all to the changelogs, waits until the broker has
    every one, then writes the local stores."""

    def __init__(self) -> None:
        self._changes: list[tuple[faust.Table, int, bytes, bytes | None]] = []

    def put(self, table: faust.Table, partition: int, key: bytes, value: bytes) -> None:
        """Set `key` of `table`, whose changelog partition `partition` owns it."""
        self._changes.append((table, partition, key, value))

    def delete(self, table: faust.Table, partition: int, key: bytes) -> None:
        self._changes.append((table, partition, key, None))

    async def apply(self, taken: TakenPartitions) -> None:
        changes, self._changes = self._changes, []
        if not changes:
            return
        await asyncio.gather(*(
            table.send_changelog(partition, key, value, value_serializer="raw")
            for table, partition, key, value in changes))
        by_partition: defaultdict[int, list[tuple[faust.Table, bytes, bytes | None]]] = \
            defaultdict(list)
        for table, partition, key, value in changes:
            by_partition[partition].append((table, key, value))
        for partition, writes in by_partition.items():
            taken.write(partition, lambda writes=writes: _store(writes))


def _store(writes: list[tuple[faust.Table, bytes, bytes | None]]) -> None:
    for table, key, value in writes:
        if value is not None:
            table.data[key] = value
        elif key in table.data:
            del table.data[key]


class State(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=State)


class CachedStates(Generic[S]):
    def __init__(self, table: faust.Table, decode: Callable[[dict[str, Any]], S],
                 capacity: int, partition_of: Callable[[str], int]) -> None:
        self._table = table
        self._partition_of = partition_of
        self._decode = decode
        self._capacity = capacity
        self._recent: OrderedDict[str, S] = OrderedDict()

    def get(self, key: str) -> S | None:
        state = self._recent.get(key)
        if state is not None:
            self._recent.move_to_end(key)
            return state
        stored = self._table.get(key.encode())
        if not stored:
            return None
        state = self._decode(orjson.loads(stored))
        self._remember(key, state)
        return state

    def put_all(self, states: dict[str, S], writes: TableWrites) -> None:
        """Add every state of a take to `writes`; they are served from memory at once."""
        for key, state in states.items():
            self._remember(key, state)
            writes.put(self._table, self._partition_of(key), key.encode(),
                       orjson.dumps(state.to_dict()))

    def forget(self) -> None:
        self._recent.clear()

    def _remember(self, key: str, state: S) -> None:
        self._recent[key] = state
        self._recent.move_to_end(key)
        if len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
