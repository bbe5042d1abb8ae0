"""Internal records in and out of a stage: a take's batches decoded, the batches for the next
stage, the deliveries a take waits for."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
from typing import Any, Protocol

import orjson

from processors import messages
from streams.dead_letters import DeadLetters, Record, Send
from streams.partitioner import partition_for

Item = tuple[str, dict[str, Any]]


class Taken(Protocol):
    """Where a take's table writes go (streams/state_cache.py `TakenPartitions`)."""

    def write(self, partition: int, write: Callable[[], Any]) -> Any: ...


InPartitions = Callable[[list[Any]], Taken]
"""The writes of a take of these records, each in the partition it belongs to."""


Effect = Callable[[Any, str, Any], Awaitable | None]
"""What a stage does with one decision of its processor: `effect(stage, key, decision)`, the
delivery to await if it sends one."""


class Outbox:
    """The batches a stage sends to the partitions of one internal topic."""

    def __init__(self, send: Send, partitions: int) -> None:
        self._send, self.partitions = send, partitions
        self.items: defaultdict[int, list[Item]] = defaultdict(list)
        self.partition_of = lru_cache(maxsize=65536)(
            lambda key: partition_for(key.encode(), partitions))

    def add(self, key: str, item: dict) -> None:
        self.items[self.partition_of(key)].append((key, item))

    async def send(self, sent: list[Awaitable]) -> None:
        """Send what was added, one batch per partition; `sent` collects the deliveries."""
        items, self.items = self.items, defaultdict(list)
        for partition, batch in sorted(items.items()):
            for record in messages.encode_batch(batch):
                sent.append(await self._send(value=record, partition=partition))


async def delivered(sent: list[Awaitable]) -> None:
    """Wait until every record in `sent` is acknowledged by the broker."""
    if sent:
        await asyncio.gather(*sent)
        sent.clear()


async def batches(records: Iterable[Record], dead_letters: DeadLetters, sent: list[Awaitable]
                  ) -> list[tuple[Record, dict[str, list[dict]]]]:
    """Each internal record with its items by key, each key's in the order they were sent; a
    record that is no batch is dead-lettered (its delivery joins `sent`)."""
    decoded = []
    for record in records:
        try:
            items = messages.decode_batch(orjson.loads(record.value))
        except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
            sent.append(await dead_letters.failure(record, exc))
            continue
        by_key: dict[str, list[dict]] = defaultdict(list)
        for key, item in items:
            by_key[key].append(item)
        decoded.append((record, by_key))
    return decoded
