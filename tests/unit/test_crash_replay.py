"""Crashes in the pure core: any crash of any stage, at any point of a take, ends with the
batch computation.

The stages run as the worker runs them: each (stage, partition) reads a log from its position,
delivers what a take produces downstream, then writes its state, then (sometimes) commits its
position. A crash loses what was not yet written — the state of the take in progress, or only
the position — and the stage reads again from its last commit, with other take boundaries.
What was delivered stays delivered, so consumers see repeated and re-split records; the
resolved credits and the latest profiles must still equal the batch computation's.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.identity import device_key
from processors.reference import Pipeline, billing_message, run_in_event_time
from schemas.events import PageView, Signup
from tests.unit.test_event_time import CONFIG, NOW, _partition, _profiles, _resolved, logs


@dataclass
class Consumer:
    """One stage's view of one partition: its log, where it reads and what it committed."""

    log: list = field(default_factory=list)
    position: int = 0
    committed: int = 0


def crash_race(log, seed: int, max_batch: int, crash_share: float) -> Pipeline:
    rng = random.Random(seed)
    pipeline = Pipeline(CONFIG, NOW)
    stages: dict[str, dict[int, Consumer]] = {
        name: defaultdict(Consumer) for name in ("in", "device", "person")}
    touches = [e for e in rng.sample(log, len(log)) if isinstance(e, (PageView, Signup))]
    billing = sorted((e for e in log if not isinstance(e, (PageView, Signup))),
                     key=lambda e: (e.ts, e.event_id))  # one producer per user, in order
    while touches or billing:  # the two producers interleave at random
        event = (touches if touches and (not billing or rng.random() < 0.5) else billing).pop(0)
        key = (device_key(event, CONFIG.identity) if isinstance(event, (PageView, Signup))
               else event.user_id)
        if key is not None:
            stages["in"][_partition(key)].log.append([(key, event)])

    def send(stage: str, items: list[tuple[str, object]]) -> None:
        """One record per partition of `stage` for all a take forwards there."""
        records: dict[int, list] = defaultdict(list)
        for key, item in items:
            records[_partition(key)].append((key, item))
        for partition, record in records.items():
            stages[stage][partition].log.append(record)

    def step_devices(record: list) -> list[tuple[str, object]]:
        forwarded: list[tuple[str, object]] = []
        for key, events in _by_key(record).items():
            views = [e for e in events if isinstance(e, (PageView, Signup))]
            forwarded += [(m.person_id, m) for m in pipeline.device(key, views)] if views else []
            forwarded += [(key, billing_message(e)) for e in events if e not in views]
        return forwarded

    def take(name: str, consumer: Consumer) -> None:
        records = consumer.log[consumer.position:consumer.position + rng.randint(1, max_batch)]
        states = pipeline.devices if name == "device" else pipeline.persons
        saved = dict(states)
        if name == "in":
            send("device", [item for record in records for item in record])
        elif name == "device":
            send("person", [item for record in records for item in step_devices(record)])
        else:
            for record in records:
                for key, messages in _by_key(record).items():
                    pipeline.person(key, messages)
        fate = rng.random()
        if fate < crash_share:  # killed after delivering, before writing the state
            states.clear()
            states.update(saved)
            consumer.position = consumer.committed
        elif fate < 2 * crash_share:  # killed after writing the state, before the commit
            consumer.position = consumer.committed
        else:
            consumer.position += len(records)
            if rng.random() < 0.5:
                consumer.committed = consumer.position

    while True:
        ready = [(name, c) for name, consumers in stages.items()
                 for c in list(consumers.values()) if c.position < len(c.log)]
        if not ready:
            return pipeline
        take(*rng.choice(ready))


def _by_key(record: list[tuple[str, object]]) -> dict[str, list]:
    """A record's items by key, each key's in order: a stage steps each key once per record."""
    by_key: dict[str, list] = defaultdict(list)
    for key, item in record:
        by_key[key].append(item)
    return by_key


@settings(max_examples=600, deadline=None)
@given(log=logs(), seed=st.integers(0, 2**32), max_batch=st.integers(1, 5),
       crash_share=st.sampled_from([0.05, 0.2]))
def test_any_crash_of_any_stage_ends_with_the_batch_computation(log, seed, max_batch,
                                                                crash_share):
    expected = run_in_event_time(log, CONFIG, NOW)
    crashed = crash_race(log, seed, max_batch, crash_share)
    assert _resolved(crashed) == _resolved(expected)
    assert _profiles(crashed) == _profiles(expected)
