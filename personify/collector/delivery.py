"""Produce a request's messages and wait until the broker acknowledged every one of them.

The collector answers 2xx only after Kafka stored each accepted event and each dead letter of
a request, so a 2xx means nothing is lost; anything else (a delivery error, a full local queue,
no acknowledgement within `timeout_ms`) is `Undelivered`, answered 503. The producer is
idempotent with `acks=all` and partitions with `murmur2_random` like the SDK (keys land where
the worker expects them). librdkafka delivers its reports from `poll`, which the event loop
itself calls every millisecond while a request waits (a thread of its own would take the GIL
back once per report, 100 times for a batch of 100, each time waiting for the loop to let go
of it: on busy cores a convoy of tens of ms); a request waits on one future, resolved by its
last report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

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


POLL_INTERVAL_S: Final = 0.001
"""How often the loop serves delivery reports while some request waits for them."""


class Undelivered(RuntimeError):
    """Some message of the request was not acknowledged by the broker."""


class _Pending:
    """One request's messages in flight: counted down by delivery reports (on the loop)."""

    __slots__ = ("remaining", "error", "future")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = count
        self.error: str | None = None
        self.future: asyncio.Future[None] = loop.create_future()

    def report(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and self.error is None:
            self.error = error.str()
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
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
        self._waiting = 0
        """Requests waiting for their reports: while there is one, the loop polls."""
        self._next_poll: asyncio.TimerHandle | None = None

    async def send(self, messages: Sequence[Outgoing]) -> None:
        """Return once every message is stored; raises `Undelivered` otherwise."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        pending = _Pending(len(messages), loop)
        self._waiting += 1
        try:
            for message in messages:
                try:
                    self._producer.produce(message.topic, message.value, message.key,
                                           headers=list(message.headers),
                                           on_delivery=pending.report)
                except (BufferError, KafkaException) as exc:  # the local queue is full
                    raise Undelivered(f"the producer refused a message: {exc}") from exc
            self._poll_soon(loop)
            await asyncio.wait_for(asyncio.shield(pending.future),
                                   timeout=self.timeout_ms / 1000 + 1.0)
        except TimeoutError as exc:
            raise Undelivered(f"no acknowledgement within {self.timeout_ms} ms") from exc
        finally:
            self._waiting -= 1
        if pending.error is not None:
            raise Undelivered(pending.error)

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued and stop; returns how many messages are still undelivered."""
        if self._next_poll is not None:
            self._next_poll.cancel()
        return self._producer.flush(timeout_s)

    def _poll_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._next_poll is None:
            self._next_poll = loop.call_later(POLL_INTERVAL_S, self._serve_reports, loop)

    def _serve_reports(self, loop: asyncio.AbstractEventLoop) -> None:
        self._next_poll = None
        self._producer.poll(0)
        if self._waiting:
            self._poll_soon(loop)
