"""Table writes the caller can wait for, and a table of versioned JSON states with the decoded
states of recently used keys in memory.

Faust sends a table change to its changelog from a buffer, and its commit flushes that buffer
only as long as it keeps moving (it gives up after 0.1 s): under load a commit can cover
inputs whose state changes never reached the changelog, and a worker that restores from the
changelog after a crash then misses them for good. `write` and `delete` change the store and
return the changelog record's delivery, so a stage awaits its state before it moves on.

Decoding a person's state (journey, frozen weights as exact fractions, payments) costs more
than the step that uses it, and a person or device is often stepped again soon. The table stays
the only durable copy: every write goes to it (and its changelog); the cache only spares
decoding what this process wrote or read a moment ago. It is emptied whenever partitions move,
so a state is never served from memory for a key another worker may have changed.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import faust
import orjson


def write(table: faust.Table, partition: int, key: bytes, value: bytes) -> Awaitable:
    """Store `value` and send it to the changelog's `partition` (the one whose stream owns the
    key: a stage that takes several records at once has no current event to ask); the
    changelog record's delivery."""
    table.data[key] = value
    return table.send_changelog(partition, key, value)


def delete(table: faust.Table, partition: int, key: bytes) -> Awaitable | None:
    """Remove `key` and send its tombstone; None when there was nothing to remove."""
    if key not in table.data:
        return None
    del table.data[key]
    return table.send_changelog(partition, key, None, value_serializer="raw")


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
            self._stream._set_current_event(self._events[partition])
            return write()

        before = self._stream.current_event
        try:
            return contextvars.copy_context().run(as_in_partition)
        finally:
            self._stream.current_event = before


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

    def put_all(self, states: dict[str, S], taken: TakenPartitions) -> list[Awaitable]:
        """Write every state of a take; the deliveries of their changelog records."""
        return [taken.write(self._partition_of(key), partial(self.put, key, state))
                for key, state in states.items()]

    def put(self, key: str, state: S) -> Awaitable:
        """Write `state` to the table (call from the stream of the key's partition); the
        delivery of its changelog record."""
        self._remember(key, state)
        return write(self._table, self._partition_of(key), key.encode(),
                     orjson.dumps(state.to_dict()))

    def forget(self) -> None:
        self._recent.clear()

    def _remember(self, key: str, state: S) -> None:
        self._recent[key] = state
        self._recent.move_to_end(key)
        if len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
