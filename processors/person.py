"""The person step: identity, journey, held revenue and credits of one person (stage B).

`step_person(state, message, config=..., now_ms=...) -> (state, outputs)` folds one message of
the person-keyed stream into the person's state and returns decisions for the shell.

Race policy (DESIGN.md §9): billing and touchpoints travel different paths, so in a replay a
payment can arrive long before the touches that precede it in event time. A person's billing
waits, in order, until the touch watermark passes its event time: every page view and signup
up to that time has been stitched and delivered ahead of the watermark on this ordered stream
(see `processors/watermarks.py`). The shell releases it with `ReleaseHeld`. Touches
that still arrive after a conversion they predate (late input) are counted and never change
frozen weights: no credit is lost or doubled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from processors.channels import UNATTRIBUTED
from processors.config import PipelineConfig
from processors.identity import (
    Link,
    LinkRefused,
    PersonIdentity,
    SignupSeen,
    StitchedTouch,
    accept_link,
    accept_touch,
    apply_signup,
    touch_from_dict,
    touch_to_dict,
)
from processors.messages import ReleaseHeld, Source, Sourced, event_from_dict, event_to_dict
from processors.revenue import (
    Credit,
    Duplicate,
    MrrMovement,
    Rejection,
    RevenueState,
    apply_billing,
)
from processors.segments import segment_of
from processors.touch import Touch
from processors.watermarks import ANY_TIME, Watermark

STATE_VERSION = 1
MAX_TOUCHES = 500
"""Touchpoints kept per person (the newest); a journey longer than this is truncated."""
MAX_JOURNEY = 100
"""Touchpoints published on a profile (the newest)."""
MAX_HELD = 1000
"""Billing events a person may hold; beyond it the oldest goes ahead without waiting."""


@dataclass(frozen=True, slots=True)
class Held:
    """A billing event waiting for the touch watermark to pass its event time."""

    message: Sourced


@dataclass(frozen=True, slots=True)
class PersonState:
    identity: PersonIdentity
    touches: tuple[Touch, ...] = ()
    """Accepted touchpoints in time order (the newest MAX_TOUCHES)."""
    revenue: RevenueState = field(default_factory=RevenueState)
    held: tuple[Held, ...] = ()
    touchpoint_count: int = 0
    signup_count: int = 0
    origins: Mapping[str, str] = field(default_factory=dict)
    """Accepted billing event id → the input message it came from (tells replays from copies)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "identity": self.identity.to_dict(),
            "touches": [touch_to_dict(t) for t in self.touches],
            "revenue": self.revenue.to_dict(),
            "held": [{"e": event_to_dict(h.message.event), "src": _source_dict(h.message.source)}
                     for h in self.held],
            "touchpoints": self.touchpoint_count,
            "signups": self.signup_count,
            "origins": dict(self.origins),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"PersonState version {data.get('v')!r} is not {STATE_VERSION}")
        return cls(
            identity=PersonIdentity.from_dict(data["identity"]),
            touches=tuple(touch_from_dict(t) for t in data["touches"]),
            revenue=RevenueState.from_dict(data["revenue"]),
            held=tuple(Held(Sourced(event_from_dict(h["e"]), Source(**h["src"])))
                       for h in data["held"]),
            touchpoint_count=data["touchpoints"],
            signup_count=data["signups"],
            origins=data["origins"],
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input event refused by this stage (duplicate, invalid refund)."""

    reason: str
    message: str
    source: Source


@dataclass(frozen=True, slots=True)
class Processed:
    """An input event accepted by this stage (for `consumed = processed + dead-lettered`)."""

    source_topic: str
    event_ts: int


@dataclass(frozen=True, slots=True)
class Converted:
    """The person's first payment: a new customer of `acquisition_channel` in `segment`."""

    person_id: str
    ts: int
    acquisition_channel: str
    segment: str
    first_touch_ts: int | None
    """None for an Unattributed customer (no journey): time to convert is unknown."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """The same input message again (re-read after a crash): its effects are already out."""

    source_topic: str


@dataclass(frozen=True, slots=True)
class LateTouch:
    """A touch that predates the conversion but arrived after it: not credited."""

    touch: Touch


@dataclass(frozen=True, slots=True)
class HoldStarted:
    """The person now has billing waiting; `ts` is the event time it waits for."""

    person_id: str
    ts: int


@dataclass(frozen=True, slots=True)
class HoldEnded:
    """Held billing went ahead; `waiting_ts` is the next held event time, None when none left."""

    person_id: str
    count: int
    waiting_ts: int | None


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    record: dict[str, Any]


PersonOutput = (Credit | MrrMovement | Converted | DeadLetter | Processed | Replayed
                | LinkRefused | LateTouch | HoldStarted | HoldEnded | ProfileChanged)


def step_person(
    state: PersonState | None,
    message: StitchedTouch | Link | SignupSeen | Sourced | ReleaseHeld,
    *,
    person_id: str,
    config: PipelineConfig,
    watermark: Watermark,
) -> tuple[PersonState, list[PersonOutput]]:
    """Fold one message in; billing the touch `watermark` has not passed yet waits."""
    current = state or PersonState(identity=PersonIdentity.new(person_id))
    outputs: list[PersonOutput] = []
    if isinstance(message, StitchedTouch):
        current = _on_touch(current, message, outputs, config)
    elif isinstance(message, Link):
        identity, _, refusal = accept_link(current.identity, message, config.identity)
        current = replace(current, identity=identity)
        if refusal is not None:
            outputs.append(refusal)
    elif isinstance(message, SignupSeen):
        current = replace(current, identity=apply_signup(current.identity, message),
                          signup_count=current.signup_count + 1)
    elif isinstance(message, ReleaseHeld):
        current = _release(current, Watermark(message.upto_ms, message.fresh_ms), outputs,
                           config)
    elif _is_replay(current, message):
        outputs.append(Replayed(message.source.topic))
    elif current.held or not _passed(watermark, message):
        if not current.held:
            outputs.append(HoldStarted(person_id, message.event.ts))
        current = replace(current, held=(*current.held, Held(message)))
        if len(current.held) > MAX_HELD:
            current = _release(current, ANY_TIME, outputs, config, limit=1)
    else:
        current = _bill(current, message, outputs, config)
    touches_before = () if state is None else state.touches
    if (isinstance(message, (SignupSeen, Link)) or current.touches != touches_before
            or any(isinstance(o, (Credit, MrrMovement, Processed)) for o in outputs)):
        outputs.append(ProfileChanged(profile_record(current, config)))
    return current, outputs


def _on_touch(state: PersonState, stitched: StitchedTouch, outputs: list[PersonOutput],
              config: PipelineConfig) -> PersonState:
    identity, accepted = accept_touch(state.identity, stitched, config.identity)
    touch = stitched.touch
    if not accepted:
        outputs.append(LinkRefused("person_anonymous_id_cap", touch.anonymous_id,
                                   stitched.person_id, touch.ts, touch.event_id))
        return replace(state, identity=identity)
    if any(t.event_id == touch.event_id for t in state.touches):
        return replace(state, identity=identity)
    conversion = state.revenue.conversion_ts
    if conversion is not None and touch.ts <= conversion:
        outputs.append(LateTouch(touch))
    touches = _insert_in_time_order(state.touches, touch)[-MAX_TOUCHES:]
    return replace(state, identity=identity, touches=touches,
                   touchpoint_count=state.touchpoint_count + 1)


def _insert_in_time_order(touches: tuple[Touch, ...], touch: Touch) -> tuple[Touch, ...]:
    position = len(touches)
    while position and (touches[position - 1].ts, touches[position - 1].event_id) > (
            touch.ts, touch.event_id):
        position -= 1
    return (*touches[:position], touch, *touches[position:])


def _passed(watermark: Watermark, message: Sourced) -> bool:
    return watermark.passed(message.event.ts, message.source.validated_at_ms)


def _release(state: PersonState, watermark: Watermark, outputs: list[PersonOutput],
             config: PipelineConfig, limit: int | None = None) -> PersonState:
    """Bill held events up to the first the watermark has not passed, keeping arrival order."""
    count = 0
    most = len(state.held) if limit is None else limit
    while count < most and _passed(watermark, state.held[count].message):
        count += 1
    if count == 0:
        return state
    released, rest = state.held[:count], state.held[count:]
    state = replace(state, held=rest)
    outputs.append(HoldEnded(state.identity.person_id, count,
                             rest[0].message.event.ts if rest else None))
    for item in released:
        state = _bill(state, item.message, outputs, config)
    return state


def _bill(state: PersonState, message: Sourced, outputs: list[PersonOutput],
          config: PipelineConfig) -> PersonState:
    event = message.event
    revenue, results = apply_billing(
        state.revenue, event, person_id=state.identity.person_id, touches=state.touches,
        signup_ts=state.identity.first_signup_ts,
        segment=segment_of(state.identity.traits, config.segments), config=config.attribution)
    for result in results:
        if isinstance(result, Duplicate):
            outputs.append(DeadLetter("duplicate_event_id",
                                      f"event_id {event.event_id!r} was already processed",
                                      message.source))
        elif isinstance(result, Rejection):
            outputs.append(DeadLetter(result.reason, result.message, message.source))
        else:
            outputs.append(result)
    if revenue is state.revenue:
        return state
    if state.revenue.conversion_ts is None and revenue.conversion_ts is not None:
        segment = segment_of(state.identity.traits, config.segments)
        outputs.append(Converted(state.identity.person_id, revenue.conversion_ts,
                                 revenue.acquisition_channel or UNATTRIBUTED, segment,
                                 revenue.first_touch_ts))
    outputs.append(Processed(message.source.topic, event.ts))
    return replace(state, revenue=revenue,
                   origins={**state.origins, event.event_id: message.source.origin})


def _is_replay(state: PersonState, message: Sourced) -> bool:
    origin = message.source.origin
    return state.origins.get(message.event.event_id) == origin or any(
        held.message.source.origin == origin for held in state.held)


def profile_record(state: PersonState, config: PipelineConfig) -> dict[str, Any]:
    """The `profile/1` record of DESIGN.md §7 (published compacted, keyed by person_id)."""
    identity, revenue = state.identity, state.revenue
    traits = identity.traits
    return {
        "schema": "profile/1",
        "person_id": identity.person_id,
        "anonymous_ids": sorted(identity.anonymous_ids),
        "acquisition_channel": revenue.acquisition_channel,
        "acquisition_campaign": revenue.acquisition_campaign,
        "segment": segment_of(traits, config.segments),
        "traits": {f.name: getattr(traits, f.name) for f in fields(traits)},
        "lifetime_revenue_minor": revenue.lifetime_revenue_reporting_minor,
        "mrr_minor": revenue.mrr_reporting_minor,
        "reporting_currency": config.attribution.reporting_currency,
        "first_touch_ts": state.touches[0].ts if state.touches else None,
        "journey": [touch_to_dict(touch) for touch in state.touches[-MAX_JOURNEY:]],
        "conversion_ts": revenue.conversion_ts,
        "counts": {
            "touchpoints": state.touchpoint_count,
            "signups": state.signup_count,
            "payments": revenue.payment_count,
            "refunds": revenue.refund_count,
            "subscription_changes": len(revenue.subscription_change_ids),
        },
    }


def _source_dict(source: Source) -> dict[str, Any]:
    return {f.name: getattr(source, f.name) for f in fields(source)}
