"""The person step: a person's facts in, corrected credits out (DESIGN.md §5–§8, §11).

`step_person(state, messages, ...)` adds a batch of one person's messages to their facts — the
share each device gives them (`Claim`), their signups and their billing — then derives every
decision from the facts alone, in event time: the conversion is the earliest payment, the
journey is the state *as of* it, a record's segment is the person's as of the revenue event.
Arrival order plays no part, so any interleaving of the stages ends with the same credits.

Credits are emitted at once and corrected later: what was emitted is remembered per credit id
(revision, segment, cause, against the stored basis), and when a late fact changes a credit the
step emits a `retract` of the previous record and an `assert` of the new one, revision + 1.
Conversions and MRR movements are corrected the same way (a `sign` of -1 takes one back), so
every aggregate that adds outputs up follows. `restatement_horizon_ms` of processing time after
a person was first credited, their basis is final: late facts are counted, not applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from processors.config import PipelineConfig
from processors.identity import (
    PERSON_ANONYMOUS_ID_CAP,
    Claim,
    ClaimedTouch,
    LinkRefused,
    SignupSeen,
    accepted_devices,
    touch_from_list,
    touch_to_dict,
    touch_to_list,
)
from processors.messages import Sourced, event_from_dict, event_to_dict, fields_dict
from processors.money import to_reporting
from processors.revenue import (
    CORRECTION_CAUSES,
    Basis,
    CorrectionCause,
    Credit,
    MovementKind,
    Rejection,
    acquisition_journey,
    credit,
    make_basis,
    mrr_steps,
    refund_rejection,
    retraction,
)
from processors.segments import segment_of
from processors.touch import Touch, in_event_time
from schemas.events import Payment, Refund, SubscriptionChange, Traits

STATE_VERSION = 2
MAX_JOURNEY = 100
"""Touchpoints published on a profile (the newest)."""

PersonMessage = Claim | SignupSeen | Sourced


# ---------------------------------------------------------------------------------------------
# State.


@dataclass(frozen=True, slots=True)
class Emitted:
    """What was last emitted for one revenue event: its segment and, per model, the revision
    and cause of the current assert (the basis is the person's stored one)."""

    segment: str
    revisions: Mapping[str, tuple[int, CorrectionCause | None]]


@dataclass(frozen=True, slots=True)
class PersonState:
    person_id: str
    devices: Mapping[str, Claim] = field(default_factory=dict)
    signups: Mapping[str, SignupSeen] = field(default_factory=dict)
    billing: Mapping[str, tuple[Payment | Refund | SubscriptionChange, str]] = field(
        default_factory=dict)
    """Accepted billing by event id, with the input message it came from."""
    rejected: Mapping[str, str] = field(default_factory=dict)
    """Billing refused for good (a refund of an unknown payment, say), by event id, with the
    input message it came from: read again after a crash, it must not be decided again when
    the facts have moved on since."""
    basis: Basis | None = None
    emitted: Mapping[str, Emitted] = field(default_factory=dict)
    first_credited_ms: int | None = None
    """Wall-clock time the person's first credit was emitted (the horizon counts from it)."""
    converted: tuple[int, str, str, int | None] | None = None
    """(ts, channel, segment, first touch ts) of the `Converted` last emitted."""
    movements: Mapping[str, tuple[str, int, int, str | None, str]] = field(default_factory=dict)
    """Subscription change id → (kind, delta, MRR after, channel, segment) last emitted."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "person_id": self.person_id,
            "devices": {anonymous_id: [c.linked_ts, [[touch_to_list(t.touch), t.logged_in]
                                                     for t in c.touches]]
                        for anonymous_id, c in self.devices.items()},
            "signups": {e: [s.ts, s.anonymous_id, fields_dict(s.traits)]
                        for e, s in self.signups.items()},
            "billing": {e: [event_to_dict(event), origin]
                        for e, (event, origin) in self.billing.items()},
            "rejected": dict(self.rejected),
            "basis": None if self.basis is None else self.basis.to_dict(),
            "emitted": {e: [x.segment, {m: list(r) for m, r in x.revisions.items()}]
                        for e, x in self.emitted.items()},
            "first_credited_ms": self.first_credited_ms,
            "converted": None if self.converted is None else list(self.converted),
            "movements": {e: list(m) for e, m in self.movements.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"PersonState version {data.get('v')!r} is not {STATE_VERSION}")
        person_id = data["person_id"]
        return cls(
            person_id=person_id,
            devices={a: Claim(person_id, a, linked,
                              tuple(ClaimedTouch(touch_from_list(t), li) for t, li in touches))
                     for a, (linked, touches) in data["devices"].items()},
            signups={e: SignupSeen(person_id, anonymous_id, ts, e, Traits(**traits))
                     for e, (ts, anonymous_id, traits) in data["signups"].items()},
            billing={e: (event_from_dict(event), origin)
                     for e, (event, origin) in data["billing"].items()},
            rejected=data.get("rejected", {}),
            basis=None if data["basis"] is None else Basis.from_dict(data["basis"]),
            emitted={e: Emitted(segment, {m: (r[0], r[1]) for m, r in revisions.items()})
                     for e, (segment, revisions) in data["emitted"].items()},
            first_credited_ms=data["first_credited_ms"],
            converted=None if data["converted"] is None else tuple(data["converted"]),
            movements={e: tuple(m) for e, m in data["movements"].items()},
        )


# ---------------------------------------------------------------------------------------------
# Outputs.


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A billing event refused by this stage (unknown currency, invalid refund)."""

    reason: str
    message: str
    message_source: Sourced


@dataclass(frozen=True, slots=True)
class Processed:
    """A billing event kept as a fact (for `consumed = processed + duplicates + dead letters`)."""

    source_topic: str
    event_ts: int


@dataclass(frozen=True, slots=True)
class DuplicateBilling:
    """A copy of billing already kept: counted, dropped; `replay` for a re-read after a crash."""

    source_topic: str
    replay: bool


@dataclass(frozen=True, slots=True)
class Converted:
    """The person's conversion: a new customer of `acquisition_channel` in `segment`.

    `sign` -1 takes back one emitted before (a correction moved it)."""

    person_id: str
    ts: int
    acquisition_channel: str
    segment: str
    first_touch_ts: int | None
    """None for an Unattributed customer (no journey): time to convert is unknown."""
    sign: int = 1


@dataclass(frozen=True, slots=True)
class MrrMovement:
    """A change of a customer's total MRR; `delta_reporting_minor` is signed. `sign` -1 takes
    back one emitted before.

    MRR belongs to customers and adds up by acquisition channel and segment: a person's
    movements are emitted once they convert (those before the conversion at that moment, with
    their own times), all under the acquisition channel and the person's current segment. So
    the all-time MRR of a channel × segment is the sum of its customers' MRR, and when the
    conversion or the segment is corrected every movement moves along with it."""

    person_id: str
    event_id: str
    subscription_id: str
    kind: MovementKind
    ts: int
    delta_reporting_minor: int
    mrr_reporting_minor: int
    reporting_currency: str
    segment: str
    acquisition_channel: str | None
    """None only when taking back a movement that an earlier version of the worker emitted
    before the person converted (it counted on `Unattributed`)."""
    sign: int = 1


@dataclass(frozen=True, slots=True)
class Corrected:
    """A credit set changed by a late fact (one per credit id corrected)."""

    model: str
    cause: CorrectionCause


@dataclass(frozen=True, slots=True)
class LateEvent:
    """Late facts changed what was emitted (`corrected`), or would have, past the horizon."""

    outcome: str


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    record: dict[str, Any]


PersonOutput = (Credit | MrrMovement | Converted | DeadLetter | Processed | DuplicateBilling
                | LinkRefused | Corrected | LateEvent | ProfileChanged)
LATE_OUTCOMES = ("corrected", "beyond_horizon")


# ---------------------------------------------------------------------------------------------
# The step.


def step_person(
    state: PersonState | None,
    messages: Iterable[PersonMessage],
    *,
    person_id: str,
    config: PipelineConfig,
    now_ms: int,
) -> tuple[PersonState, list[PersonOutput]]:
    """Add a batch of one person's messages; emit what their facts now decide differently."""
    state = state or PersonState(person_id)
    devices, signups, billing = dict(state.devices), dict(state.signups), dict(state.billing)
    rejected = dict(state.rejected)
    outputs: list[PersonOutput] = []
    causes: set[CorrectionCause] = set()
    claimed: set[str] = set()
    changed = False
    for message in messages:
        if isinstance(message, Claim):
            claimed.add(message.anonymous_id)
            before = devices.get(message.anonymous_id)
            if before == message or (before is None and not message.touches
                                     and message.linked_ts is None):
                continue
            causes.add(_claim_cause(before, message))
            if message.linked_ts is None and not message.touches:
                devices.pop(message.anonymous_id)
            else:
                devices[message.anonymous_id] = message
            changed = True
        elif isinstance(message, SignupSeen):
            if message.event_id not in signups:
                signups[message.event_id] = message
                causes.add("late_signup")
                changed = True
        elif _take_billing(message, billing, rejected, outputs, config):
            if isinstance(message.event, Payment):
                causes.add("earlier_payment")
            changed = True
    if not changed:
        return (state if rejected == state.rejected
                else replace(state, rejected=rejected)), outputs
    state = replace(state, devices=devices, signups=signups, billing=billing,
                    rejected=rejected)
    return _emit(state, causes, claimed, outputs, config, now_ms)


def _claim_cause(before: Claim | None, after: Claim) -> CorrectionCause:
    old = {c.touch.event_id for c in before.touches} if before else set()
    new = {c.touch.event_id for c in after.touches}
    if old - new:
        return "identity_move"
    if before is not None and before.linked_ts != after.linked_ts:
        return "late_link"
    return "late_touch"


def _take_billing(message: Sourced, billing: dict[str, Any], rejected: dict[str, str],
                  outputs: list[PersonOutput], config: PipelineConfig) -> bool:
    """Keep a billing event as a fact, or say why not; True when kept. An event id is decided
    once: its copies, and its re-reads after a crash, are duplicates of that decision."""
    event, source = message.event, message.source
    assert isinstance(event, (Payment, Refund, SubscriptionChange))
    known = billing.get(event.event_id)
    origin = known[1] if known is not None else rejected.get(event.event_id)
    if origin is not None:
        outputs.append(DuplicateBilling(source.topic, origin == source.origin))
        return False
    rejection = _rejection(event, billing, config)
    if rejection is not None:
        rejected[event.event_id] = source.origin
        outputs.append(DeadLetter(rejection.reason, rejection.message, message))
        return False
    billing[event.event_id] = (event, source.origin)
    outputs.append(Processed(source.topic, event.ts))
    return True


def _rejection(event: Payment | Refund | SubscriptionChange, billing: Mapping[str, Any],
               config: PipelineConfig) -> Rejection | None:
    if event.currency not in config.attribution.currency_table:
        return Rejection("unknown_currency", f"unknown currency {event.currency!r}")
    if not isinstance(event, Refund):
        return None
    payments = {e: b for e, (b, _) in billing.items() if isinstance(b, Payment)}
    refunded = sum(b.amount_minor for b, _ in billing.values()
                   if isinstance(b, Refund) and b.refund_of == event.refund_of)
    return refund_rejection(payments, refunded, event)


# ---------------------------------------------------------------------------------------------
# Deriving and diffing.


@dataclass(frozen=True, slots=True)
class Facts:
    """A person's facts sorted for deriving: touches with the time they became the person's."""

    touches: tuple[tuple[Touch, int], ...]
    signups: tuple[SignupSeen, ...]
    revenue: tuple[Payment | Refund, ...]
    changes: tuple[SubscriptionChange, ...]
    devices: tuple[str, ...]
    refused_devices: tuple[str, ...]


def person_facts(state: PersonState, config: PipelineConfig) -> Facts:
    admitted = accepted_devices(state.devices, config.identity)
    admitted_set = set(admitted)
    touches: list[tuple[Touch, int]] = []
    refused = []
    for anonymous_id, claim in state.devices.items():
        if claim.linked_ts is not None and anonymous_id not in admitted_set:
            refused.append(anonymous_id)
        for claimed in claim.touches:
            if claimed.logged_in:
                touches.append((claimed.touch, claimed.touch.ts))
            elif anonymous_id in admitted_set:
                assert claim.linked_ts is not None
                touches.append((claimed.touch, max(claimed.touch.ts, claim.linked_ts)))
    touches.sort(key=lambda pair: (pair[0].ts, pair[0].event_id))
    events = sorted((b for b, _ in state.billing.values()), key=in_event_time)
    return Facts(
        touches=tuple(touches),
        signups=tuple(sorted(state.signups.values(), key=in_event_time)),
        revenue=tuple(e for e in events if isinstance(e, (Payment, Refund))),
        changes=tuple(e for e in events if isinstance(e, SubscriptionChange)),
        devices=tuple(sorted(admitted)),
        refused_devices=tuple(sorted(refused)),
    )


def traits_as_of(signups: Iterable[SignupSeen], ts: int | None = None) -> Traits:
    """Traits merged over the signups at or before `ts` (all when None): per trait the
    non-null value of the latest signup wins; `signups` are in `(ts, event_id)` order."""
    merged: dict[str, Any] = {}
    for signup in signups:
        if ts is not None and signup.ts > ts:
            break
        merged.update((k, v) for k, v in fields_dict(signup.traits).items() if v is not None)
    return Traits(**merged)


def _emit(state: PersonState, causes: set[CorrectionCause], claimed: set[str],
          outputs: list[PersonOutput], config: PipelineConfig,
          now_ms: int) -> tuple[PersonState, list[PersonOutput]]:
    facts = person_facts(state, config)
    attribution = config.attribution
    cause = next((c for c in CORRECTION_CAUSES if c in causes), "late_touch")
    segments: dict[int, str] = {}

    def segment_at(ts: int) -> str:
        if ts not in segments:
            segments[ts] = segment_of(traits_as_of(facts.signups, ts), config.segments)
        return segments[ts]

    final = (state.first_credited_ms is not None
             and now_ms - state.first_credited_ms > config.restatement_horizon_ms)
    payments = [e for e in facts.revenue if isinstance(e, Payment)]
    basis = state.basis
    late = None
    if payments:
        conversion = payments[0]
        first_signups = [s.ts for s in facts.signups if s.ts <= conversion.ts]
        journey = acquisition_journey(facts.touches, conversion.ts, attribution.lookback_ms)
        derived = make_basis(conversion, journey, first_signups[0] if first_signups else None,
                             attribution, previous=state.basis)
        if not final:
            basis = derived
        elif derived is not state.basis:
            late = "beyond_horizon"

    emitted = dict(state.emitted)
    corrected = False
    if basis is not None:
        for event in facts.revenue:
            segment = segment_at(event.ts)
            before = emitted.get(event.event_id)
            if before is not None and final:
                if before.segment != segment:
                    late = "beyond_horizon"
                continue
            revisions = {}
            for model in attribution.models:
                previous = None if before is None else before.revisions.get(model)
                if previous is not None and _unchanged(state.basis, basis, model,
                                                       before.segment, segment):
                    revisions[model] = previous
                    continue
                new = credit(event, basis, model, person_id=state.person_id, segment=segment,
                             config=attribution)
                if previous is None:
                    outputs.append(new)
                    revisions[model] = (1, None)
                    continue
                revision, previous_cause = previous
                assert state.basis is not None and before is not None
                old = credit(event, state.basis, model, person_id=state.person_id,
                             segment=before.segment, config=attribution)
                outputs.append(retraction(replace(old, revision=revision,
                                                  cause=previous_cause)))
                outputs.append(replace(new, revision=revision + 1, cause=cause))
                outputs.append(Corrected(model, cause))
                revisions[model] = (revision + 1, cause)
                corrected = True
            emitted[event.event_id] = Emitted(segment, revisions)
    if corrected:
        late = "corrected"
    if late is not None:
        outputs.append(LateEvent(late))
    first_credited = state.first_credited_ms
    if first_credited is None and emitted:
        first_credited = now_ms
    converted = _converted(state, basis, segment_at, outputs)
    movements = _movements(state, facts, basis, outputs, config)
    state = replace(state, basis=basis, emitted=emitted, first_credited_ms=first_credited,
                    converted=converted, movements=movements)
    outputs.extend(LinkRefused(PERSON_ANONYMOUS_ID_CAP, anonymous_id)
                   for anonymous_id in facts.refused_devices if anonymous_id in claimed)
    outputs.append(ProfileChanged(profile_record(state, facts, config)))
    return state, outputs


def _unchanged(emitted: Basis | None, basis: Basis, model: str, emitted_segment: str,
               segment: str) -> bool:
    """Whether the credit emitted against `emitted` would come out the same now: splitting
    again only when the lines, the channel or the segment moved keeps unchanged revenue cheap."""
    return (emitted is not None and emitted_segment == segment
            and emitted.lines[model] == basis.lines[model]
            and emitted.acquisition_channel == basis.acquisition_channel)


def _converted(state: PersonState, basis: Basis | None, segment_at: Any,
               outputs: list[PersonOutput]) -> tuple[int, str, str, int | None] | None:
    key = None if basis is None else (basis.conversion_ts, basis.acquisition_channel,
                                      segment_at(basis.conversion_ts), basis.first_touch_ts)
    if key != state.converted:
        if state.converted is not None:
            outputs.append(Converted(state.person_id, *state.converted, sign=-1))
        if key is not None:
            outputs.append(Converted(state.person_id, *key))
    return key


def _movements(state: PersonState, facts: Facts, basis: Basis | None,
               outputs: list[PersonOutput], config: PipelineConfig
               ) -> dict[str, tuple[str, int, int, str | None, str]]:
    currency = config.attribution.reporting_currency
    by_id = {c.event_id: c for c in facts.changes}
    current: dict[str, tuple[str, int, int, str | None, str]] = {}
    if basis is not None:
        segment = segment_of(traits_as_of(facts.signups), config.segments)
        for step in mrr_steps(facts.changes, config.attribution):
            if step.kind is not None:
                current[step.change.event_id] = (step.kind, step.delta_reporting_minor,
                                                 step.mrr_reporting_minor,
                                                 basis.acquisition_channel, segment)
    for event_id in sorted({*state.movements, *current}):
        old, new = state.movements.get(event_id), current.get(event_id)
        if old == new:
            continue
        change = by_id[event_id]
        for values, sign in ((old, -1), (new, 1)):
            if values is not None:
                kind, delta, after, channel, segment = values
                outputs.append(MrrMovement(state.person_id, event_id, change.subscription_id,
                                           kind, change.ts, delta, after, currency, segment,
                                           channel, sign))  # type: ignore[arg-type]
    return current


def _movement_records(state: PersonState, facts: Facts) -> list[dict[str, Any]]:
    """The MRR movements counted for the person (from the conversion on), in time order."""
    ts_of = {c.event_id: c.ts for c in facts.changes}
    return [{"event_id": event_id, "ts": ts_of[event_id], "kind": kind, "delta_minor": delta}
            for event_id, (kind, delta, *_) in sorted(
                state.movements.items(), key=lambda item: (ts_of[item[0]], item[0]))]


def profile_is_empty(profile: Mapping[str, Any]) -> bool:
    """True for the profile of a person left with no facts: every device they were given moved
    to someone else, and they have no signup and no billing. It stands for no profile at all
    (the batch computation, which never links them, publishes none)."""
    return not profile["anonymous_ids"] and not any(profile["counts"].values())


def profile_record(state: PersonState, facts: Facts, config: PipelineConfig) -> dict[str, Any]:
    """The `profile/1` record (published compacted, keyed by person_id)."""
    attribution = config.attribution
    traits = traits_as_of(facts.signups)
    basis = state.basis
    lifetime = sum(
        to_reporting(e.amount_minor if isinstance(e, Payment) else -e.amount_minor, e.currency,
                     attribution.currency_table, attribution.reporting_currency)
        for e in facts.revenue)
    steps = mrr_steps(facts.changes, attribution)
    touches = [touch for touch, _ in facts.touches]
    return {
        "schema": "profile/1",
        "person_id": state.person_id,
        "anonymous_ids": list(facts.devices),
        "acquisition_channel": None if basis is None else basis.acquisition_channel,
        "acquisition_campaign": None if basis is None else basis.acquisition_campaign,
        "segment": segment_of(traits, config.segments),
        "traits": fields_dict(traits),
        "lifetime_revenue_minor": lifetime,
        "mrr_minor": steps[-1].mrr_reporting_minor if steps else 0,
        "reporting_currency": attribution.reporting_currency,
        "first_touch_ts": touches[0].ts if touches else None,
        "journey": [touch_to_dict(touch) for touch in touches[-MAX_JOURNEY:]],
        "conversion_ts": None if basis is None else basis.conversion_ts,
        "mrr_movements": _movement_records(state, facts),
        "counts": {
            "touchpoints": len(touches),
            "signups": len(facts.signups),
            "payments": sum(isinstance(e, Payment) for e in facts.revenue),
            "refunds": sum(isinstance(e, Refund) for e in facts.revenue),
            "subscription_changes": len(facts.changes),
        },
    }
