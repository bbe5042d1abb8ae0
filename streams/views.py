"""Write-behind to Redis: the pipeline never waits for Redis and never stops when it is down.

Agents queue idempotent writes; a background task flushes them in pipelines. While Redis is
unreachable the queue keeps only the latest write per slot (bounded by the number of persons
and partitions touched), and it catches up when Redis returns. Kafka stays the state of record:
`personify views rebuild` fills an empty Redis from the topics.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import islice

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from processors.views import BEST_CUSTOMERS, ViewWrite, queue_write
from streams.metrics import Metrics

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
BATCH = 2000


class ServingViews:
    def __init__(self, redis_url: str, metrics: Metrics) -> None:
        self._client = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._pending: dict[tuple[str, str], ViewWrite] = {}
        self._metrics = metrics
        self._up = False

    def queue(self, writes: list[ViewWrite]) -> None:
        for write in writes:
            self._pending[write.slot] = write
        self._metrics.view_writes_pending.set(len(self._pending))

    async def run(self) -> None:
        """Flush forever; back off (up to 5 s) while Redis is down."""
        delay = FLUSH_INTERVAL_S
        while True:
            await asyncio.sleep(delay)
            try:
                await self.flush()
                delay = FLUSH_INTERVAL_S
            except (RedisError, OSError) as exc:
                if self._up:
                    log.warning("Redis unavailable (%s); views will catch up when it returns",
                                exc)
                self._set_up(False)
                delay = min(5.0, delay * 2)

    async def flush(self) -> None:
        while self._pending:
            slots = list(islice(self._pending, BATCH))
            batch = [self._pending[slot] for slot in slots]
            pipe = self._client.pipeline(transaction=False)
            for write in batch:
                queue_write(pipe, write)
            await pipe.execute()
            for slot, write in zip(slots, batch, strict=True):
                if self._pending.get(slot) is write:
                    del self._pending[slot]
            self._metrics.view_writes_pending.set(len(self._pending))
        if not self._up:
            await self._client.ping()
        self._set_up(True)

    def _set_up(self, up: bool) -> None:
        self._up = up
        self._metrics.redis_up.set(1 if up else 0)

    @property
    def client(self) -> aioredis.Redis:
        return self._client


async def revenue_share_of_top(client: aioredis.Redis, fraction: float) -> float | None:
    """Share of all customers' lifetime revenue that the top `fraction` of them bring."""
    try:
        revenues = [score for _, score in await client.zrevrange(
            BEST_CUSTOMERS, 0, -1, withscores=True) if score > 0]
    except (RedisError, OSError):
        return None
    total = sum(revenues)
    if not total:
        return None
    top = max(1, round(len(revenues) * fraction))
    return sum(revenues[:top]) / total
