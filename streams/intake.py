"""The input stage on librdkafka: raw inputs in, validated events out to the device stage in
batches, refused ones to the dead-letter topic.

It holds no state, so it needs nothing of Faust: a plain confluent-kafka loop in a thread of
the worker (its own consumer group, so the inputs' partitions spread over the workers like the
stages' do) reads up to BATCH_MAX_EVENTS messages at a time, decides each with the pure
`processors.routing.route_input`, produces one record per device-events partition per batch,
waits until the broker has every record it produced, and only then commits the batch's
offsets. A crash in between reads the batch again and forwards the same events with the same
sources; the device stage knows them for re-reads (`Source.origin`) and drops them.

Faust pays its per-message cost (a task switch, an event object, an ack) on every input; here
the loop touches each message once and the broker round trips are per batch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, Message, Producer, TopicPartition

from processors import messages
from processors.config import PipelineConfig
from processors.dead_letters import dead_letter_record
from processors.routing import Dropped, Forward, route_input
from processors.validation import Rejection
from schemas.contract import headers_for
from streams.metrics import Metrics
from streams.operations import EXIT_STAGE_FAILED
from streams.partitioner import partition_for
from streams.topology import Settings

BATCH_MAX_EVENTS = 2000
"""Input messages validated per batch, at most."""
BATCH_WITHIN_S = 0.01
"""How long a batch waits to fill: the latency the stage adds at low traffic."""
LAG_EVERY_S = 5.0
DELIVERY_TIMEOUT_S = 60.0
"""A batch not delivered by then ends the process (its inputs are read again at the restart)."""
log = logging.getLogger(__name__)


class Intake:
    """One consumer and one producer; `run` until `stopping` is set."""

    def __init__(self, settings: Settings, config: PipelineConfig, metrics: Metrics,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._settings, self._config, self._metrics, self._clock_ms = (
            settings, config, metrics, clock_ms)
        names = settings.topics
        self._kinds = {names.page_views: "page_view", names.signups: "signup",
                       names.billing: "billing"}
        common = {"bootstrap.servers": settings.kafka_bootstrap, "logger": log}
        self._consumer = Consumer({
            **common, "group.id": settings.intake_group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.max.bytes": 8 * 1024 * 1024,
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_000})
        self._producer = Producer({
            **common, "enable.idempotence": True, "linger.ms": 5,
            "batch.size": 1024 * 1024, "message.max.bytes": 1024 * 1024 + 4096})
        self._failed: list[KafkaError] = []
        self._partition_of = lru_cache(maxsize=65536)(
            lambda key: partition_for(key.encode(), settings.partitions))
        self._lag_measured = 0.0

    def run(self, stopping: threading.Event) -> None:
        self._consumer.subscribe(list(self._kinds), on_assign=self._start_where_stages_were)
        try:
            while not stopping.is_set():
                batch = self._consumer.consume(BATCH_MAX_EVENTS, timeout=BATCH_WITHIN_S)
                if batch:
                    self.forward(batch)
                if time.monotonic() - self._lag_measured > LAG_EVERY_S:
                    self._measure_lag()
        finally:
            self._consumer.close()

    def forward(self, batch: list[Message]) -> None:
        """Validate, route and deliver one batch; then commit it."""
        started = time.monotonic()
        device_topic, now = self._settings.topics.device_events, self._clock_ms()
        outbox: defaultdict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        consumed: Counter[str] = Counter()
        ends: dict[tuple[str, int], int] = {}
        for message in batch:
            if message.error():
                log.warning("reading inputs: %s", message.error())
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            consumed[topic] += 1
            ends[topic, partition] = offset + 1
            raw = message.value() or b""
            outcome = route_input(raw, self._kinds[topic], topic, partition, offset,
                                  now_ms=now, config=self._config)
            if isinstance(outcome, Forward):
                outbox[self._partition_of(outcome.key)].append(
                    (outcome.key, outcome.item))
            elif isinstance(outcome, Dropped):
                self._metrics.touches_dropped.labels(outcome.reason).inc()
                self._metrics.events_processed.labels(topic).inc()
            else:
                self._dead_letter(message, outcome, now)
        for partition, items in outbox.items():
            for record in messages.encode_batch(items):
                self._produce(device_topic, record, partition=partition)
        self._deliver_all()
        for topic, count in consumed.items():
            self._metrics.events_consumed.labels(topic).inc(count)
        self._commit([TopicPartition(t, p, o) for (t, p), o in ends.items()])
        self._metrics.take_seconds.labels("validate").observe(time.monotonic() - started)

    def _measure_lag(self) -> None:
        """Messages behind the end of each input topic, over the partitions this worker reads
        (high watermarks as of the last fetch: no round trip)."""
        self._lag_measured = time.monotonic()
        lag = dict.fromkeys(self._kinds, 0)
        for tp in self._consumer.position(self._consumer.assignment()):
            high = self._consumer.get_watermark_offsets(tp, cached=True)[1]
            if tp.offset >= 0 and high >= 0:
                lag[tp.topic] += max(0, high - tp.offset)
        for topic, behind in lag.items():
            self._metrics.consumer_lag.labels(topic).set(behind)

    def _dead_letter(self, message: Message, rejection: Rejection, now_ms: int) -> None:
        topic = message.topic()
        self._metrics.dead_letters.labels(topic, rejection.reason).inc()
        record = dead_letter_record(raw=message.value() or b"", topic=topic,
                                    partition=message.partition(), offset=message.offset(),
                                    reason=rejection.reason, message=rejection.message,
                                    ts_ms=now_ms)
        self._produce(self._settings.topics.dead_letters, orjson.dumps(record),
                      key=message.key(), headers=list(headers_for(record["schema"])))

    def _produce(self, topic: str, value: bytes, **options: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, value, on_delivery=self._delivered, **options)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failed.append(error)

    def _deliver_all(self) -> None:
        """Return once the broker has every record produced; a refusal or a timeout ends the
        process, as safe as a crash: nothing of the batch is committed."""
        left = self._producer.flush(DELIVERY_TIMEOUT_S)
        if left or self._failed:
            log.critical("the input stage could not deliver a batch (%d undelivered, errors %s);"
                         " exiting so that it is read again", left, self._failed[:3])
            logging.shutdown()
            os._exit(EXIT_STAGE_FAILED)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - a rebalance took the partitions meanwhile
            log.warning("committing inputs failed (%s): their new owner reads them again", exc)

    def _start_where_stages_were(self, consumer: Consumer, partitions: list[TopicPartition]
                                 ) -> None:
        """Partitions this group never committed start where the worker's own group left them,
        if it read them (a worker that validated inputs in a Faust agent): an upgrade does not
        read the history again."""
        committed = consumer.committed(partitions, timeout=10)
        fresh = [tp for tp in committed if tp.offset == OFFSET_INVALID]
        if not fresh:
            return
        earlier = Consumer({"bootstrap.servers": self._settings.kafka_bootstrap,
                            "group.id": self._settings.app_id, "logger": log})
        try:
            previous = {(tp.topic, tp.partition): tp.offset
                        for tp in earlier.committed(fresh, timeout=10) if tp.offset >= 0}
        finally:
            earlier.close()
        for tp in partitions:
            if (tp.topic, tp.partition) in previous:
                tp.offset = previous[tp.topic, tp.partition]
        if previous:
            consumer.assign(partitions)


def start_intake(settings: Settings, config: PipelineConfig, metrics: Metrics
                 ) -> Callable[[], None]:
    """Run the input stage in a thread; the function returned stops it (and waits)."""
    stopping = threading.Event()

    def run() -> None:
        try:
            Intake(settings, config, metrics).run(stopping)
        except Exception:
            log.critical("the input stage failed; exiting", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_STAGE_FAILED)

    thread = threading.Thread(target=run, name="intake", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=15)

    return stop
