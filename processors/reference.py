"""The batch computation: the whole event log through the rules in event-time order.

What the streaming pipeline must end with once its input is drained, whatever the arrival
order (invariant 5): events are applied one at a time in `(ts, event_id)` order, each device
decision delivered to its person at once, so nothing ever arrives late and nothing is
corrected. `current_credits` then gives one credit set per revenue event and model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from processors.config import PipelineConfig
from processors.identity import (
    Claim,
    DeviceInput,
    DeviceState,
    SignupSeen,
    device_key,
    step_device,
)
from processors.messages import Source, Sourced
from processors.person import (
    PersonOutput,
    PersonState,
    ProfileChanged,
    profile_is_empty,
    step_person,
)
from processors.revenue import Credit, credit_record
from processors.touchpoints import detect_touch
from schemas.events import Event, PageView, Signup

BILLING_TOPIC = "billing-v1"


@dataclass
class Pipeline:
    """Device and person states, stepped by the caller in any order it likes (the property
    tests race them); every person output is appended to `outputs`."""

    config: PipelineConfig
    now_ms: int
    devices: dict[str, DeviceState] = field(default_factory=dict)
    persons: dict[str, PersonState] = field(default_factory=dict)
    outputs: list[PersonOutput] = field(default_factory=list)

    def device(self, key: str, events: Iterable[PageView | Signup]) -> list[Claim | SignupSeen]:
        """Step one device over a batch of its events; the messages for persons."""
        state, outputs = step_device(
            self.devices.get(key), [DeviceInput(e, f"in:{e.event_id}") for e in events],
            anonymous_id=key, detect_touch=partial(detect_touch, config=self.config.channels),
            session_timeout_ms=self.config.channels.session_timeout_ms,
            config=self.config.identity)
        self.devices[key] = state
        return [o for o in outputs if isinstance(o, (Claim, SignupSeen))]

    def person(self, key: str, messages: Iterable[Claim | SignupSeen | Sourced]) -> None:
        state, outputs = step_person(self.persons.get(key), messages, person_id=key,
                                     config=self.config, now_ms=self.now_ms)
        self.persons[key] = state
        self.outputs.extend(outputs)

    def credits(self) -> list[Credit]:
        return [o for o in self.outputs if isinstance(o, Credit)]

    def profiles(self) -> dict[str, dict[str, Any]]:
        return latest_profiles(o.record for o in self.outputs if isinstance(o, ProfileChanged))


def latest_profiles(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest profile per person, as a compacted topic keeps them; an empty profile stands
    for none (`profile_is_empty`)."""
    latest = {record["person_id"]: record for record in records}
    return {person: record for person, record in latest.items()
            if not profile_is_empty(record)}


def billing_message(event: Event) -> Sourced:
    """A billing event as the validating stage forwards it (its source is made up)."""
    return Sourced(event, Source(BILLING_TOPIC, 0, 0, event.event_id))


def run_in_event_time(events: Iterable[Event], config: PipelineConfig,
                      now_ms: int) -> Pipeline:
    """Every event in `(ts, event_id)` order, each decision delivered at once."""
    pipeline = Pipeline(config, now_ms)
    for event in sorted(events, key=lambda e: (e.ts, e.event_id)):
        if isinstance(event, (PageView, Signup)):
            key = device_key(event, config.identity)
            if key is not None:
                for message in pipeline.device(key, [event]):
                    pipeline.person(message.person_id, [message])
        else:
            pipeline.person(event.user_id, [billing_message(event)])
    return pipeline


def current_credits(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The newest assert per credit id, after checking every retract cancels the assert of
    its revision exactly (ValueError otherwise)."""
    asserts: dict[tuple[str, int], Mapping[str, Any]] = {}
    current: dict[str, Mapping[str, Any]] = {}
    for record in records:
        key = (record["credit_id"], record["revision"])
        if record["op"] == "retract":
            if _negated(asserts.get(key)) != dict(record, op="assert"):
                raise ValueError(f"retract {key} does not cancel an earlier assert")
            continue
        asserts[key] = record
        newest = current.get(record["credit_id"])
        if newest is None or newest["revision"] < record["revision"]:
            current[record["credit_id"]] = record
    return current


def _negated(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {**record,
            "amount_minor": -record["amount_minor"],
            "reporting_amount_minor": -record["reporting_amount_minor"],
            "lines": [{**line, "amount_minor": -line["amount_minor"],
                       "reporting_amount_minor": -line["reporting_amount_minor"]}
                      for line in record["lines"]]}


def resolve_log(events: Iterable[Event], config: PipelineConfig,
                now_ms: int) -> dict[str, Mapping[str, Any]]:
    """The batch computation's credits: credit id → credit record."""
    pipeline = run_in_event_time(events, config, now_ms)
    return current_credits(credit_record(c) for c in pipeline.credits())
