"""Write-behind to Redis: the pipeline never waits for Redis and never stops when it is down.

Agents queue idempotent writes; a background task flushes them in pipelines. While Redis is
unreachable the queue keeps only the latest write per slot (bounded by the number of persons
and partitions touched), and it catches up when Redis returns.

Kafka stays the state of record. A marker key says "these views hold everything written since
the topics began"; when it is missing (a fresh Redis, or one restarted without its data or
flushed) the writer rebuilds the views from the topics (streams/views_rebuild.py) before it
flushes again, and sets the marker. The local Redis also keeps an append-only file, so a
restart alone loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from itertools import islice

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from readmodels.serving_views import BEST_CUSTOMERS, PREFIX, ViewWrite, queue_write
from streams.metrics import Metrics

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
BATCH = 2000
MARKER = f"{PREFIX}:views:complete-since"
"""Present while the views hold every profile and credit of the topics."""
CHECK_MARKER_EVERY_S = 5.0


class ServingViews:
    def __init__(self, redis_url: str, metrics: Metrics,
                 rebuild: Callable[[], int]) -> None:
        self._client = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._pending: dict[tuple[str, str], ViewWrite] = {}
        self._metrics = metrics
        self._rebuild = rebuild
        self._up = False
        self._marker_checked_at = float("-inf")

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
            except Exception:  # the rebuild reads Kafka: retried like Redis, never fatal
                log.exception("rebuilding the serving views failed; retrying")
                self._set_up(False)
                delay = min(5.0, delay * 2)

    async def flush(self) -> None:
        if not self._up or time.monotonic() - self._marker_checked_at > CHECK_MARKER_EVERY_S:
            await self._ensure_complete()
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

    async def _ensure_complete(self) -> None:
        """Rebuild the views from Kafka when the marker is gone (the writes queued meanwhile
        are newer than anything the rebuild reads, and are flushed after it)."""
        if not await self._client.exists(MARKER):
            log.warning("Redis holds no complete serving views (new, emptied or restarted "
                        "without its data): rebuilding them from Kafka")
            started = time.monotonic()
            written = await asyncio.to_thread(self._rebuild)
            await self._client.set(MARKER, int(time.time() * 1000), nx=True)
            self._metrics.view_rebuilds.inc()
            log.warning("serving views rebuilt: %d writes in %.1f s", written,
                        time.monotonic() - started)
        self._marker_checked_at = time.monotonic()

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
