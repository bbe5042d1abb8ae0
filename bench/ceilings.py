"""Ceilings on the same bytes: what plain Python and Kafka's JVM tools move on this machine.

The worker's throughput is read against them: the Python loop is the cost of one consume and
one produce per event with librdkafka and no processing (the worker makes three hops and keeps
state, so it cannot reach it); the same-rules loop is the honest ceiling, the worker's very
rules (validate, stitch, credit) over in-memory dicts in one plain loop, with no framework,
no tables and no hops; the perf tools are the broker's own limit.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.broker import produce_patiently
from bench.kafka_tools import ToolRate, consumer_performance, producer_performance
from bench.progress import say
from bench.sandbox import Sandbox
from bench.workload import Backlog
from personify.sdk import PRODUCER_DEFAULTS
from personify.stack.proc import usage_of
from processors import messages
from processors.config import PipelineConfig
from processors.identity import Claim, DeviceInput, DeviceState, SignupSeen, step_device
from processors.person import PersonState, step_person
from processors.revenue import Credit, credit_record
from processors.routing import Forward, route_input
from processors.touchpoints import detect_touch
from schemas.events import PageView, Signup


@dataclass(frozen=True, slots=True)
class PythonLoop:
    events: int
    seconds: float
    events_per_s: float
    cpu_s_per_1000_events: float


def _inputs_to(sandbox: Sandbox, output: str) -> tuple[Consumer, Producer]:
    """A consumer of the backlog's input topics from their start (its group named after
    `output`) and a producer, for a loop writing to the new topic `output`."""
    settings = sandbox.settings
    sandbox.create_topic(output)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": output, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for topic in settings.topics.inputs()
                     for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions])
    producer = Producer({**PRODUCER_DEFAULTS, "linger.ms": 5, "compression.type": "none",
                         "bootstrap.servers": settings.kafka_bootstrap})
    return consumer, producer


def _measured(events: int, started: float, cpu_before: float) -> PythonLoop:
    seconds = time.monotonic() - started
    cpu = usage_of(os.getpid()).cpu_s - cpu_before
    return PythonLoop(events, seconds, events / seconds, 1000 * cpu / events)


def python_loop(sandbox: Sandbox, backlog: Backlog, output: str,
                timeout_s: float = 600) -> PythonLoop:
    """Consume the backlog's input topics from the start and produce every record, key and
    value unchanged, to the new topic `output`; timed from the first record read to the last
    acknowledgement."""
    consumer, producer = _inputs_to(sandbox, output)
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
    return _measured(moved, started, cpu_before)


def same_rules_loop(sandbox: Sandbox, backlog: Backlog, target: str,
                    timeout_s: float = 900) -> PythonLoop:
    """Consume the backlog's inputs from the start and apply the worker's rules in one plain
    loop: each batch's events routed and validated, each device stepped once per batch, each
    person once per batch with what the devices and billing gave them, every credit record
    produced to `target`. States live in dicts; nothing is written anywhere else."""
    topics = sandbox.settings.topics
    config = PipelineConfig()
    detect = partial(detect_touch, config=config.channels)
    kinds = {topics.page_views: "page_view", topics.signups: "signup", topics.billing: "billing"}
    devices: dict[str, DeviceState] = {}
    persons: dict[str, PersonState] = {}
    consumer, producer = _inputs_to(sandbox, target)
    seen, started, cpu_before = 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < backlog.events and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=1000, timeout=0.05)
            if batch and not started:
                started, cpu_before = time.monotonic(), usage_of(os.getpid()).cpu_s
            by_device: defaultdict[str, list] = defaultdict(list)
            by_person: defaultdict[str, list] = defaultdict(list)
            now = time.time_ns() // 1_000_000
            for message in batch:
                if message.error():
                    continue
                seen += 1
                routed = route_input(message.value() or b"", kinds[message.topic()],
                                     message.topic(), message.partition(), message.offset(),
                                     now_ms=now, config=config)
                if isinstance(routed, Forward):
                    sourced = messages.decode(routed.item)
                    if isinstance(sourced.event, PageView | Signup):
                        by_device[routed.key].append(
                            DeviceInput(sourced.event, sourced.source.origin))
                    else:
                        by_person[routed.key].append(sourced)
            for key, inputs in by_device.items():
                devices[key], outputs = step_device(
                    devices.get(key), inputs, anonymous_id=key, detect_touch=detect,
                    session_timeout_ms=config.channels.session_timeout_ms,
                    config=config.identity)
                for output in outputs:
                    if isinstance(output, Claim | SignupSeen):
                        by_person[output.person_id].append(output)
            for key, items in by_person.items():
                persons[key], outputs = step_person(persons.get(key), items, person_id=key,
                                                    config=config, now_ms=now)
                for output in outputs:
                    if isinstance(output, Credit):
                        produce_patiently(producer, target, orjson.dumps(credit_record(output)),
                                          key.encode())
        producer.flush(60)
    finally:
        consumer.close()
    return _measured(seen, started, cpu_before)


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The median of `REPEATS` runs of each (runs on this data take a second or two, so one
    run alone is at the mercy of whatever else the machine does)."""

    python_loop: PythonLoop
    same_rules: PythonLoop
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
    loops, rules, produced, consumed = [], [], [], []
    for run in range(1, REPEATS + 1):
        say(f"ceilings, run {run} of {REPEATS}")
        loops.append(python_loop(sandbox, backlog, output=f"{topic}-loop-{run}"))
        rules.append(same_rules_loop(sandbox, backlog, target=f"{topic}-rules-{run}"))
        produced.append(producer_performance(settings, topic, backlog.events, payloads))
        consumed.append(consumer_performance(settings, topic, backlog.events,
                                             f"{topic}-{run}"))
        say(f"  Python consume → produce {loops[-1].events_per_s:,.0f} events/s, same rules "
            f"in a plain loop {rules[-1].events_per_s:,.0f} events/s "
            f"({rules[-1].cpu_s_per_1000_events:.3f} CPU-s per 1,000), "
            f"ProducerPerformance {produced[-1].records_per_s:,.0f} records/s, "
            f"ConsumerPerformance {consumed[-1].records_per_s:,.0f} records/s")
    return Ceilings(_median(loops, lambda r: r.events_per_s),
                    _median(rules, lambda r: r.cpu_s_per_1000_events),
                    _median(produced, lambda r: r.records_per_s),
                    _median(consumed, lambda r: r.records_per_s))
