"""Open-loop latency: a live stream sent on a fixed schedule, credits timed as they arrive.

Each event has a scheduled send time `t0 + i / rate` and carries it as its `ts`. A revenue
event's latency is the moment its last credit record (one per model) is consumed from the
credits topic minus its *scheduled* time, so a producer or worker that falls behind shows up
as latency instead of silently sending later (no coordinated omission). Events scheduled in
the warm-up are sent but not measured.

The stream is a second simulated population. Its first part is preloaded (sent at once, with
its own times) so the measured part is steady-state traffic: renewals and refunds of customers
whose history the worker holds, not only first visits; it also has twice the revenue events
per input event of a population's first weeks, so more samples.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.broker import group_lag, produce_patiently
from bench.progress import say
from bench.workload import LiveEvent
from personify.sdk import PRODUCER_DEFAULTS
from processors.attribution import MODELS
from streams.topology import Settings

LIVE_PRODUCER = {**PRODUCER_DEFAULTS, "linger.ms": 5}
"""The SDK's producer settings with a shorter linger, as a latency-minded producer would use."""
START_DELAY_S = 0.5
REPORT_EVERY_S = 10.0
IDLE_INTERNAL_LAG = 0
"""Uncommitted internal records of an idle worker: none (it sends nothing while idle)."""


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or
    below it."""
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


class CreditClock:
    """Reads the credits topic from its current end in a thread; notes when each revenue
    event's first credit set is complete (wall clock, seconds: payment → first credit) and
    counts the corrections that follow."""

    def __init__(self, settings: Settings, group: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                   "group.id": group, "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 10})
        topic = settings.topics.credits
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([
            TopicPartition(topic, p, self._consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10)[1])
            for p in partitions])
        self._counts: dict[str, int] = {}
        self.corrections = 0
        self._completed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            # poll() returns as soon as a record is there (consume() would wait for a batch)
            message = self._consumer.poll(0.05)
            arrived = time.time()
            if message is not None and not message.error():
                record = orjson.loads(message.value())
                if record["revision"] > 1:
                    self.corrections += record["op"] == "assert"
                    continue
                if record["op"] != "assert":
                    continue
                event_id = record["revenue_event_id"]
                self._counts[event_id] = count = self._counts.get(event_id, 0) + 1
                if count == len(MODELS):
                    with self._lock:
                        self._completed_at[event_id] = arrived

    def completed_at(self) -> dict[str, float]:
        with self._lock:
            return dict(self._completed_at)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


@dataclass(frozen=True, slots=True)
class RateLatency:
    share_of_sustained: float
    offered_events_per_s: float
    seconds: float
    events_sent: int
    samples: int
    """Revenue events scheduled after the warm-up (each one latency)."""
    incomplete: int
    """Measured revenue events whose credits did not all arrive before the drain timeout."""
    corrections_per_1000: float
    """Credits corrected after their first assert, per 1,000 credit sets (revenue events ×
    models): the rarer, the less often the stages overtook each other."""
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    producer_behind_max_ms: float
    """How far the producer fell behind its own schedule at worst."""


def send_on_schedule(producer: Producer, events: list[LiveEvent], rate: float,
                     t0: float) -> float:
    """Produce event i at `t0 + i / rate` (wall clock), its `ts` set to that time; returns the
    largest delay behind schedule, in seconds."""
    behind = 0.0
    for index, event in enumerate(events):
        scheduled = t0 + index / rate
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            behind = max(behind, -delay)
        produce_patiently(producer, event.topic, event.encode(int(scheduled * 1000)), event.key)
    producer.flush(60)
    return behind


def await_credits(clock: CreditClock, event_ids: set[str], timeout_s: float) -> dict[str, float]:
    """Wait until every one of `event_ids` has its credit set, or `timeout_s`; returns the
    completion times seen."""
    deadline = time.monotonic() + timeout_s
    next_report = time.monotonic() + REPORT_EVERY_S
    while True:
        completed = clock.completed_at()
        if event_ids <= completed.keys() or time.monotonic() > deadline:
            return completed
        if time.monotonic() >= next_report:
            next_report += REPORT_EVERY_S
            say(f"  {len(event_ids & completed.keys()):,} / {len(event_ids):,} revenue events "
                "credited")
        time.sleep(0.1)


def await_idle(settings: Settings, timeout_s: float) -> bool:
    """Wait until the input stage's group has committed every input record and the worker's
    internal topics hold no more than an idle worker's traffic; False at `timeout_s`."""
    names = settings.topics
    internal = [names.device_events, names.person_events]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        inputs = group_lag(settings.kafka_bootstrap, settings.intake_group, [*names.inputs()])
        lag = group_lag(settings.kafka_bootstrap, settings.app_id, internal)
        if sum(inputs.values()) == 0 and sum(lag[t] for t in internal) <= IDLE_INTERNAL_LAG:
            return True
        time.sleep(1.0)
    return False


def _producer(settings: Settings) -> Producer:
    return Producer({**LIVE_PRODUCER, "bootstrap.servers": settings.kafka_bootstrap})


@dataclass(frozen=True, slots=True)
class Preload:
    events: int
    seconds: float
    """First send to the last credit set complete (the worker idle after that is not counted)."""
    incomplete: int
    """Preloaded revenue events still without credits when the latency runs began."""
    corrections_per_1000: float
    """Corrections per 1,000 credit sets with the stream sent flat out: the stages overtake
    each other far more often than at a steady rate."""


def preload(settings: Settings, events: list[LiveEvent], *, timeout_s: float,
            group: str) -> Preload:
    """Send `events` as fast as possible with their own times, wait for their credits and for
    the worker to be idle, so the measured part of the stream meets people the worker already
    knows and no backlog."""
    clock = CreditClock(settings, group)
    producer = _producer(settings)
    started = time.monotonic()
    try:
        for event in events:
            produce_patiently(producer, event.topic, event.encode(), event.key)
        producer.flush(60)
        expected = {e.revenue_event_id for e in events if e.revenue_event_id}
        completed = await_credits(clock, expected, timeout_s)
        seconds = time.monotonic() - started
        await_idle(settings, timeout_s)
    finally:
        clock.close()
    return Preload(events=len(events), seconds=seconds,
                   incomplete=len(expected - completed.keys()),
                   corrections_per_1000=1000 * clock.corrections
                   / max(1, len(expected) * len(MODELS)))


def measure_rate(settings: Settings, events: list[LiveEvent], *, share: float, rate: float,
                 warmup_s: float, drain_timeout_s: float, group: str) -> RateLatency:
    clock = CreditClock(settings, group)
    producer = _producer(settings)
    t0 = time.time() + START_DELAY_S
    try:
        behind = send_on_schedule(producer, events, rate, t0)
        scheduled = {event.revenue_event_id: t0 + index / rate
                     for index, event in enumerate(events) if event.revenue_event_id}
        completed_at = await_credits(clock, set(scheduled), drain_timeout_s)
        await_idle(settings, drain_timeout_s)  # the next rate starts on a worker with no backlog
    finally:
        clock.close()
    measured = {event_id: at for event_id, at in scheduled.items() if at >= t0 + warmup_s}
    latencies = sorted(1000 * (completed_at[event_id] - at)
                       for event_id, at in measured.items() if event_id in completed_at)
    result = RateLatency(
        share_of_sustained=share, offered_events_per_s=rate, seconds=len(events) / rate,
        events_sent=len(events), samples=len(latencies),
        incomplete=len(measured) - len(latencies),
        corrections_per_1000=1000 * clock.corrections / max(1, len(scheduled) * len(MODELS)),
        p50_ms=percentile(latencies, 0.50) if latencies else math.nan,
        p99_ms=percentile(latencies, 0.99) if latencies else math.nan,
        p999_ms=percentile(latencies, 0.999) if latencies else math.nan,
        max_ms=latencies[-1] if latencies else math.nan,
        producer_behind_max_ms=1000 * behind)
    say(f"  {share:.0%} ({rate:,.0f} events/s): p50 {result.p50_ms:,.0f} ms, p99 "
        f"{result.p99_ms:,.0f} ms, p99.9 {result.p999_ms:,.0f} ms over {result.samples} "
        f"revenue events ({result.incomplete} incomplete), "
        f"{result.corrections_per_1000:.1f} corrections per 1,000 credit sets")
    return result


def measure_rates(settings: Settings, stream: list[LiveEvent], sustained_per_s: float, *,
                  shares: tuple[float, ...], seconds: float, warmup_s: float,
                  drain_timeout_s: float, group: str) -> list[RateLatency]:
    """One run per share of the sustained throughput, each on the next part of `stream`
    (cut short when the stream runs out)."""
    results, start = [], 0
    for share in shares:
        rate = share * sustained_per_s
        count = min(int(rate * seconds), len(stream) - start)
        say(f"latency at {share:.0%} of sustained: {rate:,.0f} events/s for "
            f"{count / rate:.0f} s")
        results.append(measure_rate(settings, stream[start:start + count], share=share,
                                    rate=rate, warmup_s=warmup_s,
                                    drain_timeout_s=drain_timeout_s, group=f"{group}-{share}"))
        start += count
    return results
