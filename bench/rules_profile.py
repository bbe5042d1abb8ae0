"""`python -m bench.rules_profile [--people N --seed S] [--profile]`: the rules alone, offline.

The worker's per-record work without Kafka, Faust or tables, on the simulated demo workload
held in memory: each batch of `BATCH` input events is validated and routed (the input stage),
its internal records encoded and decoded as they travel between the stages, each device and
each person stepped once per record with the messages decoded from it, every credit record
and the newest profile per person serialized, and every changed state serialized as the
stores write it. Prints CPU seconds per 1,000 input events (the median of `--runs` runs, each
from empty state) and a digest of everything the rules produced, so two versions of the code
can be compared for cost and checked for the very same results; `--profile` adds cProfile's
top entries.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import orjson

from personify.simulator.population import SimulationConfig
from personify.simulator.stream import generate
from processors import messages
from processors.config import PipelineConfig
from processors.identity import DAY_MS, Claim, DeviceInput, DeviceState, SignupSeen, step_device
from processors.person import PersonState, ProfileChanged, step_person
from processors.revenue import Credit, credit_record
from processors.routing import Forward, route_input
from processors.touchpoints import detect_touch
from schemas.events import PageView, Signup
from streams.partitioner import partition_for
from streams.topology import Settings

BATCH = 1000
"""Input events per batch: what the input stage takes per consume."""


@dataclass(frozen=True, slots=True)
class InputMessage:
    topic: str
    partition: int
    offset: int
    value: bytes


def workload(simulation: SimulationConfig, seed: int, settings: Settings
             ) -> list[InputMessage]:
    """The simulated population's messages in stream order, with the coordinates the input
    topics would give them (keyed like the SDK keys them)."""
    offsets: defaultdict[tuple[str, int], int] = defaultdict(int)
    out = []
    for event in generate(simulation, random.Random(seed)):
        if event.value is None:
            key, value = event.key, (event.raw or "").encode()
        else:
            key = event.value["user_id" if event.topic == settings.topics.billing
                              else "anonymous_id"]
            value = orjson.dumps(event.value)
        partition = partition_for((key or "").encode(), settings.partitions)
        out.append(InputMessage(event.topic, partition, offsets[event.topic, partition], value))
        offsets[event.topic, partition] += 1
    return out


@dataclass
class Rules:
    """The three stages' rules over in-memory states; `digest` hashes every output record."""

    settings: Settings
    config: PipelineConfig
    now_ms: int
    devices: dict[str, DeviceState] = field(default_factory=dict)
    persons: dict[str, PersonState] = field(default_factory=dict)
    digest: Any = field(default_factory=hashlib.sha256)
    stored: int = 0

    def run(self, inputs: list[InputMessage]) -> None:
        for start in range(0, len(inputs), BATCH):
            to_devices = self.intake(inputs[start:start + BATCH])
            self.persons_step(self.devices_step(to_devices))

    def intake(self, batch: list[InputMessage]) -> list[bytes]:
        topics = self.settings.topics
        kinds = {topics.page_views: "page_view", topics.signups: "signup",
                 topics.billing: "billing"}
        outbox: defaultdict[int, list[tuple[str, dict]]] = defaultdict(list)
        for message in batch:
            routed = route_input(message.value, kinds[message.topic], message.topic,
                                 message.partition, message.offset, now_ms=self.now_ms,
                                 config=self.config)
            if isinstance(routed, Forward):
                outbox[self._partition(routed.key)].append((routed.key, routed.item))
            else:
                self.digest.update(repr(routed).encode())
        return self._records(outbox)

    def devices_step(self, records: list[bytes]) -> list[bytes]:
        detect = partial(detect_touch, config=self.config.channels)
        outbox: defaultdict[int, list[tuple[str, dict]]] = defaultdict(list)
        changed: dict[str, DeviceState] = {}
        for record in records:
            for key, items in _grouped(record).items():
                inputs = []
                for item in map(messages.decode, items):
                    if isinstance(item.event, PageView | Signup):
                        inputs.append(DeviceInput(item.event, item.source.origin))
                    else:
                        outbox[self._partition(key)].append((key, messages.encode(item)))
                if not inputs:
                    continue
                before = self.devices.get(key)
                state, outputs = step_device(
                    before, inputs, anonymous_id=key, detect_touch=detect,
                    session_timeout_ms=self.config.channels.session_timeout_ms,
                    config=self.config.identity)
                for output in outputs:
                    if isinstance(output, Claim | SignupSeen):
                        outbox[self._partition(output.person_id)].append(
                            (output.person_id, messages.encode(output)))
                    else:
                        self.digest.update(repr(output).encode())
                if state is not before:
                    self.devices[key] = changed[key] = state
        self._store(changed)
        return self._records(outbox)

    def persons_step(self, records: list[bytes]) -> None:
        changed: dict[str, PersonState] = {}
        profiles: dict[str, dict] = {}
        for record in records:
            for key, items in _grouped(record).items():
                before = self.persons.get(key)
                state, outputs = step_person(before, [messages.decode(i) for i in items],
                                             person_id=key, config=self.config,
                                             now_ms=self.now_ms)
                for output in outputs:
                    if isinstance(output, Credit):
                        self.digest.update(orjson.dumps(credit_record(output)))
                    elif isinstance(output, ProfileChanged):
                        profiles[key] = output.record
                    else:
                        self.digest.update(repr(output).encode())
                if state is not before:
                    self.persons[key] = changed[key] = state
        for record in profiles.values():
            self.digest.update(orjson.dumps(record))
        self._store(changed)

    def __post_init__(self) -> None:
        self._partition = lru_cache(maxsize=65536)(  # as the stages cache it
            lambda key: partition_for(key.encode(), self.settings.partitions))

    @staticmethod
    def _records(outbox: dict[int, list[tuple[str, dict]]]) -> list[bytes]:
        return [record for _, items in sorted(outbox.items())
                for record in messages.encode_batch(items)]

    def _store(self, changed: dict[str, DeviceState] | dict[str, PersonState]) -> None:
        for state in changed.values():
            self.stored += len(orjson.dumps(state.to_dict()))


def _grouped(record: bytes) -> dict[str, list[dict]]:
    by_key: defaultdict[str, list[dict]] = defaultdict(list)
    for key, item in messages.decode_batch(orjson.loads(record)):
        by_key[key].append(item)
    return by_key


def measured(run: Callable[[], Rules]) -> tuple[float, Rules]:
    started = time.process_time()
    rules = run()
    return time.process_time() - started, rules


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_profile",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=5_000, help="simulated people (5,000)")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs; the median is shown")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top 25")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    settings = Settings()
    print(f"simulating {options.people:,} people (seed {options.seed})", flush=True)
    simulation = SimulationConfig(people=options.people, topics=settings.topics)
    inputs = workload(simulation, options.seed, settings)
    now_ms = simulation.start_ms + (simulation.days + 1) * DAY_MS  # fixed: the same every run
    fresh = partial(Rules, settings, PipelineConfig(), now_ms)

    def once() -> Rules:
        rules = fresh()
        rules.run(inputs)
        return rules

    seconds = []
    for run in range(1, options.runs + 1):
        cpu, rules = measured(once)
        seconds.append(cpu)
        print(f"run {run} of {options.runs}: {cpu:.2f} CPU-s, "
              f"{1000 * cpu / len(inputs):.3f} CPU-s per 1,000 events", flush=True)
    per_1000 = 1000 * statistics.median(seconds) / len(inputs)
    print(f"{len(inputs):,} input events; median {per_1000:.3f} CPU-s per 1,000 events; "
          f"results {rules.digest.hexdigest()[:16]} "
          f"({rules.stored:,} state bytes written)")
    if options.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU time: the box is shared
        profiler.runcall(once)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
