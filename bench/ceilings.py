"""Ceilings on the same bytes: what plain Python and Kafka's JVM tools move on this machine.

The worker's throughput is read against them: the Python loop is the cost of one consume and
one produce per event with librdkafka and no processing (the worker makes three hops and keeps
state, so it cannot reach it); the perf tools are the broker's own limit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.broker import produce_patiently
from bench.kafka_tools import ToolRate, consumer_performance, producer_performance
from bench.progress import say
from bench.sandbox import Sandbox
from bench.worker import usage_of
from bench.workload import Backlog
from personify.sdk import PRODUCER_DEFAULTS


@dataclass(frozen=True, slots=True)
class PythonLoop:
    events: int
    seconds: float
    events_per_s: float
    cpu_s_per_1000_events: float


def python_loop(sandbox: Sandbox, backlog: Backlog, output: str,
                timeout_s: float = 600) -> PythonLoop:
    """Consume the backlog's input topics from the start and produce every record, key and
    value unchanged, to the new topic `output`; timed from the first record read to the last
    acknowledgement."""
    settings = sandbox.settings
    sandbox.create_topic(output)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": output, "enable.auto.commit": False})
    producer = Producer({**PRODUCER_DEFAULTS, "linger.ms": 5, "compression.type": "none",
                         "bootstrap.servers": settings.kafka_bootstrap})
    partitions = [TopicPartition(topic, p, OFFSET_BEGINNING)
                  for topic in settings.topics.inputs()
                  for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
    consumer.assign(partitions)
    moved, started, cpu_before = 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while moved < backlog.events and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=1000, timeout=0.05)  # waits to fill a batch
            if batch and not started:
                started, cpu_before = time.monotonic(), usage_of(os.getpid()).cpu_s
            for message in batch:
                if message.error():
                    continue
                produce_patiently(producer, output, message.value(), message.key())
                moved += 1
        producer.flush(60)
    finally:
        consumer.close()
    seconds = time.monotonic() - started
    cpu = usage_of(os.getpid()).cpu_s - cpu_before
    return PythonLoop(moved, seconds, moved / seconds, 1000 * cpu / moved)


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The median of `REPEATS` runs of each (runs on this data take a second or two, so one
    run alone is at the mercy of whatever else the machine does)."""

    python_loop: PythonLoop
    producer_performance: ToolRate
    consumer_performance: ToolRate


REPEATS = 3

Run = TypeVar("Run", PythonLoop, ToolRate)


PAYLOAD_SAMPLE = 200_000
"""Values ProducerPerformance draws its records from (all of a large backlog's would not fit
its heap)."""


def _median(runs: list[Run], rate: Callable[[Run], float]) -> Run:
    return sorted(runs, key=rate)[len(runs) // 2]


def measure_ceilings(sandbox: Sandbox, backlog: Backlog) -> Ceilings:
    settings = sandbox.settings
    topic = sandbox.name("perf")
    sandbox.create_topic(topic)
    payloads = backlog.write_values(sandbox.workdir / "payloads.txt", limit=PAYLOAD_SAMPLE)
    loops, produced, consumed = [], [], []
    for run in range(1, REPEATS + 1):
        say(f"ceilings, run {run} of {REPEATS}")
        loops.append(python_loop(sandbox, backlog, output=f"{topic}-loop-{run}"))
        produced.append(producer_performance(settings, topic, backlog.events, payloads))
        consumed.append(consumer_performance(settings, topic, backlog.events,
                                             f"{topic}-{run}"))
        say(f"  Python consume → produce {loops[-1].events_per_s:,.0f} events/s, "
            f"ProducerPerformance {produced[-1].records_per_s:,.0f} records/s, "
            f"ConsumerPerformance {consumed[-1].records_per_s:,.0f} records/s")
    return Ceilings(_median(loops, lambda r: r.events_per_s),
                    _median(produced, lambda r: r.records_per_s),
                    _median(consumed, lambda r: r.records_per_s))
