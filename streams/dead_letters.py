"""Sending a rejected input to the dead-letter topic, counted: shared by every stage."""

from __future__ import annotations

import time
from collections.abc import Awaitable

import orjson

from processors.dead_letters import dead_letter_record
from schemas.contract import headers_for
from streams.context import Pipeline


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def send_dead_letter(pipeline: Pipeline, key: bytes | None, raw: bytes, topic: str,
                           partition: int, offset: int, reason: str,
                           message: str) -> Awaitable:
    """The delivery of the dead letter (await it before committing the input)."""
    pipeline.metrics.dead_letters.labels(topic, reason).inc()
    record = dead_letter_record(raw=raw, topic=topic, partition=partition, offset=offset,
                                reason=reason, message=message, ts_ms=wall_ms())
    return await pipeline.topics.dead_letters.send(key=key, value=orjson.dumps(record),
                                                   headers=headers_for(record["schema"]))
