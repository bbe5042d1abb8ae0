"""Produce a request's messages and wait until the broker acknowledged every one of them.

The collector answers 2xx only after Kafka stored each accepted event and each dead letter of
a request, so a 2xx means nothing is lost; anything else (a delivery error, a full local queue,
no acknowledgement within `timeout_ms`) is `Undelivered`, answered 503. The producer is
idempotent with `acks=all` and partitions with `murmur2_random` like the SDK (keys land where
the worker expects them). librdkafka delivers its reports from `poll`, which a thread of its own
calls; a request waits on one future, resolved when its last report arrived.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from personify.sdk import PRODUCER_DEFAULTS
from schemas.contract import Headers


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    """`schemas.contract.headers_for` the value's schema."""


class Sink(Protocol):
    """Where the collector's messages go: `Delivery` (Kafka), or a list in the fast tests."""

    async def send(self, messages: Sequence[Outgoing]) -> None: ...


class Undelivered(RuntimeError):
    """Some message of the request was not acknowledged by the broker."""


class _Pending:
    """One request's messages in flight: counted down by delivery reports from the poll thread."""

    __slots__ = ("remaining", "error", "future", "loop", "lock")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = count
        self.error: str | None = None
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.lock = threading.Lock()

    def report(self, error: KafkaError | None, message: Message) -> None:
        with self.lock:
            if error is not None and self.error is None:
                self.error = error.str()
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self.loop.call_soon_threadsafe(self._resolve)

    def abandon(self, count: int) -> None:
        """`count` messages were never produced; the reports of the others still arrive."""
        with self.lock:
            self.remaining -= count

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class Delivery:
    def __init__(self, bootstrap_servers: str, *, timeout_ms: int, linger_ms: int = 1) -> None:
        self.timeout_ms = timeout_ms
        self._producer = Producer({
            **PRODUCER_DEFAULTS,
            "linger.ms": linger_ms,
            "message.timeout.ms": timeout_ms,
            "bootstrap.servers": bootstrap_servers,
        })
        self._stopped = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="delivery-reports", daemon=True)
        self._poller.start()

    async def send(self, messages: Sequence[Outgoing]) -> None:
        """Return once every message is stored; raises `Undelivered` otherwise."""
        if not messages:
            return
        pending = _Pending(len(messages), asyncio.get_running_loop())
        for sent, message in enumerate(messages):
            try:
                self._producer.produce(message.topic, message.value, message.key,
                                       headers=list(message.headers),
                                       on_delivery=pending.report)
            except (BufferError, KafkaException) as exc:  # the local queue is full
                pending.abandon(len(messages) - sent)  # never produced: no report will come
                raise Undelivered(f"the producer refused a message: {exc}") from exc
        try:
            await asyncio.wait_for(asyncio.shield(pending.future),
                                   timeout=self.timeout_ms / 1000 + 1.0)
        except TimeoutError as exc:
            raise Undelivered(f"no acknowledgement within {self.timeout_ms} ms") from exc
        if pending.error is not None:
            raise Undelivered(pending.error)

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued and stop; returns how many messages are still undelivered."""
        self._stopped.set()
        self._poller.join()
        return self._producer.flush(timeout_s)

    def _poll(self) -> None:
        while not self._stopped.is_set():
            self._producer.poll(0.1)
