"""The stateful stages in memory: tables are dicts with a recorded changelog, every send is
recorded (topic, partition, key, value, headers) and delivered at once, and the input stage's
decisions (`route_input`) become the device stage's batches as the worker would send them."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from personify.simulator import SimulationConfig, generate
from processors.aggregates import AggregateConfig
from processors.config import PipelineConfig
from processors.identity import DeviceState
from processors.messages import encode_batch
from processors.person import PersonState
from processors.routing import Forward, route_input
from processors.spend import SpendState
from processors.validation import Rejection, decode
from schemas.events import Event
from streams.aggregate_store import AggregateStore
from streams.dead_letters import DeadLetters
from streams.metrics import create_metrics
from streams.partitioner import partition_for
from streams.stages.devices import DeviceStage
from streams.stages.persons import PersonStage
from streams.stages.records import Outbox
from streams.stages.spend import SpendStage, partition_of
from streams.state_cache import CachedStates
from streams.topology import Topics

NAMES = Topics()
KINDS = {NAMES.page_views: "page_view", NAMES.signups: "signup", NAMES.billing: "billing"}


class Table(dict):
    """A table's local store, and its changelog as (partition, key, value) in order."""

    def __init__(self) -> None:
        super().__init__()
        self.data = self
        self.changelog: list[tuple[int, bytes, bytes | None]] = []

    def send_changelog(self, partition, key, value, value_serializer=None):
        self.changelog.append((partition, key, value))
        return delivered()


def delivered() -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class Taken:
    def write(self, partition, write):
        return write()


def in_partitions(records) -> Taken:
    return Taken()


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    message: Message


@dataclass(frozen=True)
class Sent:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes
    headers: Any


@dataclass
class Sends:
    records: list[Sent] = field(default_factory=list)

    def to(self, topic: str):
        async def send(*, key=None, value=None, partition=None, headers=None):
            self.records.append(Sent(topic, partition, key, value, headers))
            return delivered()
        return send

    def on(self, topic: str) -> list[Sent]:
        return [sent for sent in self.records if sent.topic == topic]

    def values(self, topic: str) -> list[dict]:
        return [orjson.loads(sent.value) for sent in self.on(topic)]

    def log(self, topic: str) -> dict[int, list[Record]]:
        """What the stage reading `topic` finds in each of its partitions."""
        logs: dict[int, list[Record]] = defaultdict(list)
        for sent in self.on(topic):
            log = logs[sent.partition]
            log.append(Record(sent.key, sent.value, Message(topic, sent.partition, len(log))))
        return logs


@dataclass
class Views:
    queued: list = field(default_factory=list)

    def queue(self, writes) -> None:
        self.queued.extend(writes)


@dataclass
class Stages:
    """The stateful stages, owning every partition, and all they touch."""

    partitions: int
    config: PipelineConfig
    now_ms: int
    sends: Sends = field(default_factory=Sends)
    views: Views = field(default_factory=Views)
    metrics: Any = field(default_factory=create_metrics)
    tables: dict[str, Table] = field(default_factory=lambda: defaultdict(Table))

    def __post_init__(self) -> None:
        dead_letters = DeadLetters(self.sends.to(NAMES.dead_letters), self.metrics.dead_letters,
                                   clock=lambda: self.now_ms)
        outbox = Outbox(self.sends.to(NAMES.person_events), self.partitions)
        self.devices = DeviceStage(
            outbox, CachedStates(self.tables["devices"], DeviceState.from_dict, 100,
                                 outbox.partition_of),
            dead_letters, self.metrics, self.config, NAMES)
        self.persons = PersonStage(
            CachedStates(self.tables["persons"], PersonState.from_dict, 100, outbox.partition_of),
            AggregateStore(self.tables["aggregates"],
                           AggregateConfig.for_models(self.config.attribution.models)),
            send_credit=self.sends.to(NAMES.credits), send_profile=self.sends.to(NAMES.profiles),
            queue_views=self.views.queue, dead_letters=dead_letters, metrics=self.metrics,
            config=self.config, clock=lambda: self.now_ms)
        self.spend = SpendStage(
            CachedStates(self.tables["spend_facts"], SpendState.from_dict, 100, partition_of),
            AggregateStore(self.tables["spend_aggregates"],
                           AggregateConfig.for_models(self.config.attribution.models)),
            dead_letters, self.metrics, self.config.spend, self.config.validation,
            clock=lambda: self.now_ms)

    def metric(self, name: str, **labels) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def race(self, device_log: dict[int, list[Record]], seed: int, most: int = 4) -> None:
        """Takes of 1 to `most` records, of any partition of either stage, until both are
        drained: each partition read in order, the stages racing each other."""
        rng = random.Random(seed)
        read: dict[tuple[str, int], int] = defaultdict(int)
        while True:
            logs = {"device": device_log, "person": self.sends.log(NAMES.person_events)}
            ready = [(stage, partition) for stage, log in logs.items()
                     for partition, records in sorted(log.items())
                     if read[stage, partition] < len(records)]
            if not ready:
                return
            stage, partition = rng.choice(ready)
            start = read[stage, partition]
            take = logs[stage][partition][start:start + rng.randint(1, most)]
            read[stage, partition] += len(take)
            await (self.devices if stage == "device" else self.persons).take(in_partitions, take)


def simulated(people: int, seed: int) -> tuple[list[Record], list[Event], int]:
    """A simulated workload as raw input records (defects included), the valid events among
    them, and the simulation's end as `now`."""
    config = SimulationConfig(people=people, days=30)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    inputs, valid = [], []
    for event in generate(config, random.Random(seed)):
        raw = event.raw.encode() if event.raw is not None else orjson.dumps(event.value)
        key = event.key.encode() if event.key is not None else None
        partition = partition_for(key, 4) if key is not None else 0
        inputs.append(Record(key, raw, Message(event.topic, partition,
                                               offsets[event.topic, partition])))
        offsets[event.topic, partition] += 1
        decoded = decode(raw, KINDS[event.topic], now_ms=config.end_ms,
                         config=PipelineConfig().validation)
        if not isinstance(decoded, Rejection):
            valid.append(decoded)
    return inputs, valid, config.end_ms


def device_batches(inputs: list[Record], partitions: int, config: PipelineConfig, now_ms: int,
                   per_take: int = 50) -> dict[int, list[Record]]:
    """The device stage's input: the input stage's forwards, one batch record per device
    partition for each take of `per_take` input records."""
    forwards = []
    for record in inputs:
        msg = record.message
        routed = route_input(record.value, KINDS[msg.topic], msg.topic, msg.partition, msg.offset,
                             now_ms=now_ms, config=config)
        if isinstance(routed, Forward):
            forwards.append((routed.key, routed.item))
    log: dict[int, list[Record]] = defaultdict(list)
    for start in range(0, len(forwards), per_take):
        by_partition: dict[int, list] = defaultdict(list)
        for key, item in forwards[start:start + per_take]:
            by_partition[partition_for(key.encode(), partitions)].append((key, item))
        for partition, items in sorted(by_partition.items()):
            for value in encode_batch(items):
                log[partition].append(Record(None, value, Message(
                    NAMES.device_events, partition, len(log[partition]))))
    return log
