"""What the SDK and the command line tell about the broker: whether it answers, in one sentence
that says what to do, and librdkafka's own log lines through Python `logging`, repeats held back.

Light on purpose: the SDK imports it, so it imports nothing of the pipeline (no Faust, no Redis).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from streams.logs import RepeatLimiter

KAFKA_LOGGER = "personify.kafka"
"""The logger librdkafka's lines go to (confluent-kafka's `logger` setting)."""

CONNECT_TIMEOUT_S = 5.0
"""How long a client waits on a broker that does not answer before it says so."""

_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")
_DIGITS = re.compile(r"\d+")


def unreachable_message(bootstrap: str) -> str:
    """The one line that says the broker is not there, and what to do about it."""
    return f"Kafka unreachable at {bootstrap} — is the stack up? (`personify stack up`)"


class BrokerUnreachable(ConnectionError):
    """No broker answered a reader's first request; the message says what to do."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(unreachable_message(bootstrap))


def partitions_of(client: Consumer, topic: str, bootstrap: str) -> list[int]:
    """The partitions of `topic` (none while it does not exist); `BrokerUnreachable` within
    CONNECT_TIMEOUT_S when no broker answers."""
    try:
        metadata = client.list_topics(topic, timeout=CONNECT_TIMEOUT_S)
    except KafkaException:
        raise BrokerUnreachable(bootstrap) from None
    return list(metadata.topics[topic].partitions)


class LibrdkafkaRecords(logging.Filter):
    """Turns confluent-kafka's `("%s [%s] %s", facility, client, text)` records into
    `kafka FACILITY: text`, so each kind of line is a template of its own for RepeatLimiter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "%s [%s] %s" and len(record.args or ()) == 3:
            facility, _, text = record.args
            record.msg, record.args = f"kafka {facility}: {_THREAD_PREFIX.sub('', text)}", ()
        return True


def _without_numbers(record: logging.LogRecord) -> Hashable:
    """`after 0ms`, `after 3001ms`, `3 identical error(s) suppressed`: still the same failure."""
    return _DIGITS.sub("#", str(record.msg))


def kafka_logger() -> logging.Logger:
    """The logger for librdkafka's lines; a failed reconnect logged many times a second shows
    once per 30 s with how many like it were held back."""
    logger = logging.getLogger(KAFKA_LOGGER)
    if not any(isinstance(f, LibrdkafkaRecords) for f in logger.filters):
        logger.addFilter(LibrdkafkaRecords())
        logger.addFilter(RepeatLimiter(key=_without_numbers))
    return logger


def client_config(bootstrap: str) -> dict[str, Any]:
    """What every Kafka client of the tools starts from: the broker, and librdkafka's lines
    through `logging` rather than raw on stderr."""
    return {"bootstrap.servers": bootstrap, "logger": kafka_logger()}


class BrokerWatch:
    """Since when no broker has answered, from librdkafka's error callback (`error_cb`): it
    reports `_ALL_BROKERS_DOWN` once every connection failed, then each failed reconnect."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            with self._lock:
                if self._down_since is None:
                    self._down_since = self._clock()

    def answered(self) -> None:
        """A broker acknowledged something: it is up."""
        with self._lock:
            self._down_since = None

    def down_for(self) -> float:
        """Seconds since every broker was found down; 0 while one may be up."""
        with self._lock:
            return 0.0 if self._down_since is None else self._clock() - self._down_since
