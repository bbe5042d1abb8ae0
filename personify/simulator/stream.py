"""The population as one time-ordered stream of events, and the totals its truth file reports."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from personify.simulator.ordering import TimeOrderedMerge
from personify.simulator.population import (
    PersonTruth,
    SimEvent,
    SimulationConfig,
    households,
)
from personify.simulator.spend import (
    channel_of_line,
    reporting_amount,
    spend_events,
    spend_truth,
)


def encode_event(event: SimEvent) -> list[Any]:
    """An event as a JSON-able list, for spilled runs (`decode_event` reads it back)."""
    return [event.ts, event.topic, event.key, event.value, event.raw, event.defect]


def decode_event(fields: list[Any]) -> SimEvent:
    return SimEvent(*fields)


def time_ordering(config: SimulationConfig) -> TimeOrderedMerge[SimEvent]:
    """The merge `generate` uses by default: `config.max_pending` events in memory at most."""
    return TimeOrderedMerge(config.max_pending, encode_event, decode_event, config.spill_dir)


def generate(
    config: SimulationConfig,
    rng: random.Random,
    *,
    on_person: Callable[[PersonTruth], None] | None = None,
    merge: TimeOrderedMerge[SimEvent] | None = None,
) -> Iterator[SimEvent]:
    """Every event of the population in stream order (`ts`, then generation order).

    Deterministic for a given config and `rng` state. `on_person` receives each person's truth
    once their household is generated (arrival order, ahead of their later events). Memory
    stays flat: households are generated one at a time and the merge spills to disk beyond
    `config.max_pending` waiting events; pass `merge` to inspect it.
    """
    with merge or time_ordering(config) as ordering:
        if config.spend:
            for line in spend_events(config):
                ordering.push(line.ts, line)
        for household in households(config, rng):
            for event in household.events:
                ordering.push(event.ts, event)
            if on_person is not None:
                for person in household.people:
                    on_person(person)
            yield from ordering.release(household.arrival_ms)
        yield from ordering.drain()


@dataclass(slots=True)
class Totals:
    """Counts over the stream and the population, for the truth file's `totals`.

    Per topic: `events` (every message), `malformed` (must be dead-lettered) and `duplicates`
    (must be dropped); per currency: well-formed payments and refunds, count and minor units.
    """

    people: int = 0
    signups: int = 0
    customers: int = 0
    ambiguous: int = 0
    topics: dict[str, Counter[str]] = field(default_factory=dict)
    defects: Counter[str] = field(default_factory=Counter)
    currencies: dict[str, Counter[str]] = field(default_factory=dict)
    spend_minor: Counter[str] = field(default_factory=Counter)
    """Channel → spend in the reporting currency, converted line by line."""
    acquired: Counter[str] = field(default_factory=Counter)
    """Acquisition channel → customers."""

    def count_event(self, event: SimEvent) -> None:
        topic = self.topics.setdefault(event.topic, Counter(events=0, malformed=0, duplicates=0))
        topic["events"] += 1
        if event.defect is not None:
            self.defects[event.defect] += 1
            topic["duplicates" if event.defect == "duplicate" else "malformed"] += 1
            return
        value = event.value or {}
        if value.get("schema") == "spend/1":
            self.spend_minor[channel_of_line(value)] += reporting_amount(value)
        kind = value.get("kind")
        if kind in ("payment", "refund"):
            money = self.currencies.setdefault(value["currency"], Counter(
                payments=0, payments_minor=0, refunds=0, refunds_minor=0))
            money[f"{kind}s"] += 1
            money[f"{kind}s_minor"] += value["amount_minor"]

    def count_person(self, person: PersonTruth) -> None:
        self.people += 1
        self.signups += person.user_id is not None
        self.customers += person.conversion_ts is not None
        if person.acquisition_channel is not None:
            self.acquired[person.acquisition_channel] += 1
        self.ambiguous += person.ambiguous and person.user_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "people": self.people,
            "signups": self.signups,
            "customers": self.customers,
            "ambiguous_signups": self.ambiguous,
            "events": sum(counts["events"] for counts in self.topics.values()),
            "topics": {name: dict(counts) for name, counts in sorted(self.topics.items())},
            "defects": dict(sorted(self.defects.items())),
            "currencies": {code: dict(money) for code, money in sorted(self.currencies.items())},
            "spend": spend_truth(self.spend_minor, self.acquired),
        }
