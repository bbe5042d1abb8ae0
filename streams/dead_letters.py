"""Sending a rejected input to the dead-letter topic, counted: shared by every stage."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from processors.dead_letters import dead_letter_record
from schemas.contract import headers_for

log = logging.getLogger(__name__)

Send = Callable[..., Awaitable[Awaitable]]
"""A topic's send, as Faust's `topic.send(key=, value=, partition=, headers=)`: it returns the
delivery to await."""


class Message(Protocol):
    topic: str
    partition: int
    offset: int


class Record(Protocol):
    """What a stage reads of an input record (a Faust event)."""

    key: bytes | None
    value: bytes | None
    message: Message


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class DeadLetters:
    def __init__(self, send: Send, counter: Counter, clock: Callable[[], int] = wall_ms) -> None:
        self._send, self._counter, self._clock = send, counter, clock

    async def send(self, key: bytes | None, raw: bytes, topic: str, partition: int,
                   offset: int, reason: str, message: str) -> Awaitable:
        """The delivery of the dead letter (await it before committing the input)."""
        self._counter.labels(topic, reason).inc()
        record = dead_letter_record(raw=raw, topic=topic, partition=partition, offset=offset,
                                    reason=reason, message=message, ts_ms=self._clock())
        return await self._send(key=key, value=orjson.dumps(record),
                                headers=headers_for(record["schema"]))

    async def failure(self, record: Record, exc: Exception, key: str | None = None,
                      items: list[Any] | None = None) -> Awaitable:
        """A defect met on one record (or one key's items of a batch) dead-letters it, and the
        stream goes on."""
        msg = record.message
        log.error("processing %s[%s]@%s failed", msg.topic, msg.partition, msg.offset,
                  exc_info=exc)
        raw = orjson.dumps([key, items]) if items is not None else record.value or b""
        return await self.send(key.encode() if key is not None else record.key, raw, msg.topic,
                               msg.partition, msg.offset, "processing_error",
                               f"{type(exc).__name__}: {exc}")
