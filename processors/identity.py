"""Identity stitching: devices (anonymous ids) to people (user ids) (DESIGN.md §3, §10).

Two keyed steps, both pure:

* `step_device` runs keyed by `anonymous_id` over the page views and signups of one device. It
  decides who owns each touch of the device and which links between device and person exist.
* `accept_link`, `accept_touch` and `apply_signup` run keyed by person over the decisions of the
  device step and keep what the pipeline knows about one person.

Rules, in the order they are applied to a device:

* An event carrying both ids links them (a signup always, a logged-in page view too), unless an
  id is junk or the device is full: the link that would give it its
  `max_people_per_device + 1`-th distinct person is refused and the device is public from that
  link's time on.
* A logged-in page view's touch belongs to its `user_id`, even when its link is refused.
* An anonymous touch belongs to the person most recently linked at the touch's time. Touches
  earlier than the first link belong to the first person when at most `lookback_ms` before that
  link; before any link they wait (pending) and are released to the first person linked.
* On a public device, anonymous touches at or after `public_since` go to nobody.

Every refusal and every touch that goes to nobody is an output, so nothing is silent.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from processors.junk import is_junk_id
from processors.touch import Touch
from schemas.events import PageView, Signup, Traits

DAY_MS = 86_400_000
STATE_VERSION = 1

PAGE_VIEW_KIND = "page_view"
SIGNUP_KIND = "signup"

# Why a link is refused (a closed set: metric label values).
JUNK_ANONYMOUS_ID = "junk_anonymous_id"
JUNK_USER_ID = "junk_user_id"
PUBLIC_DEVICE = "public_device"
PERSON_ANONYMOUS_ID_CAP = "person_anonymous_id_cap"
REFUSAL_REASONS = (JUNK_ANONYMOUS_ID, JUNK_USER_ID, PUBLIC_DEVICE, PERSON_ANONYMOUS_ID_CAP)

# Why an anonymous touch goes to nobody (a closed set: metric label values).
PENDING_EXPIRED = "pending_expired"
PENDING_OVERFLOW = "pending_overflow"
DROP_REASONS = (JUNK_ANONYMOUS_ID, PUBLIC_DEVICE, PENDING_EXPIRED, PENDING_OVERFLOW)


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    max_people_per_device: int = 5
    """Distinct people a device may be linked to; the next one makes it a public device."""
    max_anonymous_ids_per_person: int = 100
    """Devices one person may own; the next one is refused (`person_anonymous_id_cap`)."""
    lookback_ms: int = 90 * DAY_MS
    """How far before a device's first link its anonymous touches are still stitched to it."""
    max_pending_touches: int = 200
    """Touches an unlinked device keeps waiting for its first link; the oldest is dropped."""
    max_remembered_event_ids: int = 256
    """Event ids a device remembers for de-duplication: its most recently arrived events."""
    max_link_spans: int = 64
    """Owner changes a device remembers; beyond it the oldest changes after the first merge."""
    junk_block_list: frozenset[str] = frozenset()
    """Ids that are junk in this deployment, on top of the built-in ones (`processors.junk`)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"IdentityConfig.{f.name} must be >= 1, got {value}")

    def is_junk(self, value: str | None) -> bool:
        return is_junk_id(value, self.junk_block_list)


# ---------------------------------------------------------------------------------------------
# Decisions of the device step (the caller sends them downstream, keyed by person_id).


@dataclass(frozen=True, slots=True)
class StitchedTouch:
    """`touch` belongs to `person_id`: through a login (`logged_in`) or through a device link."""

    person_id: str
    touch: Touch
    logged_in: bool


@dataclass(frozen=True, slots=True)
class Link:
    """The first time `person_id` is seen on `anonymous_id`; `via` is the carrying event's kind."""

    person_id: str
    anonymous_id: str
    ts: int
    event_id: str
    via: str


@dataclass(frozen=True, slots=True)
class SignupSeen:
    """A signup of `person_id` (also when its link is refused): traits and signup time."""

    person_id: str
    anonymous_id: str
    ts: int
    event_id: str
    traits: Traits


@dataclass(frozen=True, slots=True)
class LinkRefused:
    """A link that was not made, with the reason (one of `REFUSAL_REASONS`)."""

    reason: str
    anonymous_id: str
    person_id: str
    ts: int
    event_id: str


@dataclass(frozen=True, slots=True)
class TouchDropped:
    """An anonymous touch stitched to nobody, with the reason (one of `DROP_REASONS`)."""

    reason: str
    touch: Touch


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A later copy of an event already processed; dropped, counted by `kind`.

    `replay` is True when the copy comes from the very same input message (same origin): the
    pipeline re-reading after a crash, not a producer sending twice.
    """

    event_id: str
    kind: str
    replay: bool = False


DeviceOutput = StitchedTouch | Link | SignupSeen | LinkRefused | TouchDropped | Duplicate
DetectTouch = Callable[[PageView, int | None], Touch | None]


# ---------------------------------------------------------------------------------------------
# Device state.


@dataclass(frozen=True, slots=True)
class LinkSpan:
    """`person_id` was the most recently linked person from `start_ts` on; linked last at `end_ts`.

    The device's owner at time t is the person of the last span starting at or before t. Keeping
    the last link time too lets a late link of another person that falls after `end_ts` be placed
    exactly (nobody linked in between).
    """

    start_ts: int
    end_ts: int
    person_id: str


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What one anonymous id remembers; every collection is bounded by `IdentityConfig`."""

    people: tuple[str, ...] = ()
    """Distinct people linked, in the order their first link was processed."""
    spans: tuple[LinkSpan, ...] = ()
    """Owner history in time order; adjacent spans have different people."""
    public_since: int | None = None
    """Time of the earliest link refused because the device was full."""
    pending: tuple[Touch, ...] = ()
    """Anonymous touches waiting for the first link, in time order (empty once linked)."""
    last_view_ts: int | None = None
    """Latest page view of the device, whoever viewed it (visit detection)."""
    newest_ts: int | None = None
    """Latest event time of the device (pending expiry)."""
    seen: tuple[tuple[str, str, str], ...] = ()
    """(kind, event_id, origin) of the most recently arrived events, oldest first."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "people": list(self.people),
            "spans": [[s.start_ts, s.end_ts, s.person_id] for s in self.spans],
            "public_since": self.public_since,
            "pending": [touch_to_dict(t) for t in self.pending],
            "last_view_ts": self.last_view_ts,
            "newest_ts": self.newest_ts,
            "seen": [list(key) for key in self.seen],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceState:
        _check_version(data, cls.__name__)
        return cls(
            people=tuple(data["people"]),
            spans=tuple(LinkSpan(start, end, person) for start, end, person in data["spans"]),
            public_since=data["public_since"],
            pending=tuple(touch_from_dict(t) for t in data["pending"]),
            last_view_ts=data["last_view_ts"],
            newest_ts=data["newest_ts"],
            seen=tuple((kind, event_id, origin) for kind, event_id, origin in data["seen"]),
        )


_TOUCH_FIELDS = tuple(f.name for f in fields(Touch))


def touch_to_dict(touch: Touch) -> dict[str, Any]:
    return {name: getattr(touch, name) for name in _TOUCH_FIELDS}


def touch_from_dict(data: dict[str, Any]) -> Touch:
    return Touch(**{name: data[name] for name in _TOUCH_FIELDS if name in data})


def _check_version(data: dict[str, Any], name: str) -> None:
    if data.get("v") != STATE_VERSION:
        raise ValueError(f"{name} version {data.get('v')!r} is not {STATE_VERSION}")


def _span_start(span: LinkSpan) -> int:
    return span.start_ts


# ---------------------------------------------------------------------------------------------
# The device step.


def step_device(
    state: DeviceState | None,
    event: PageView | Signup,
    *,
    detect_touch: DetectTouch,
    config: IdentityConfig,
    origin: str = "",
) -> tuple[DeviceState, tuple[DeviceOutput, ...]]:
    """Apply one page view or signup of a device; return the new state and the decisions.

    `origin` names the input message (topic, partition, offset) so that a replay of it can be
    told from a second copy sent by a producer.
    A duplicate (same kind and event id among the remembered ones) changes nothing. Released
    pending touches come before the `Link` that released them; a logged-in view's `Link` comes
    before its own touch.
    """
    state = state or DeviceState()
    kind = SIGNUP_KIND if isinstance(event, Signup) else PAGE_VIEW_KIND
    for seen_kind, seen_id, seen_origin in state.seen:
        if seen_id == event.event_id and seen_kind == kind:
            replay = bool(origin) and origin == seen_origin
            return state, (Duplicate(event.event_id, kind, replay),)
    outputs: list[DeviceOutput] = []
    state = _advance(state, (kind, event.event_id, origin), event.ts, outputs, config)
    if isinstance(event, Signup):
        state = _on_signup(state, event, outputs, config)
    else:
        state = _on_page_view(state, event, detect_touch, outputs, config)
    return state, tuple(outputs)


def _advance(
    state: DeviceState,
    key: tuple[str, str, str],
    ts: int,
    outputs: list[DeviceOutput],
    config: IdentityConfig,
) -> DeviceState:
    """Remember the event id, move the device clock and expire pending touches behind it."""
    seen = (*state.seen, key)[-config.max_remembered_event_ids :]
    newest = ts if state.newest_ts is None else max(state.newest_ts, ts)
    expired = bisect_right(state.pending, newest - config.lookback_ms - 1, key=_touch_ts)
    outputs.extend(TouchDropped(PENDING_EXPIRED, touch) for touch in state.pending[:expired])
    pending = state.pending[expired:] if expired else state.pending
    return replace(state, seen=seen, newest_ts=newest, pending=pending)


def _on_signup(
    state: DeviceState, signup: Signup, outputs: list[DeviceOutput], config: IdentityConfig
) -> DeviceState:
    state = _link(state, signup.user_id, signup, SIGNUP_KIND, outputs, config)
    if not config.is_junk(signup.user_id):
        outputs.append(
            SignupSeen(
                signup.user_id, signup.anonymous_id, signup.ts, signup.event_id, signup.traits
            )
        )
    return state


def _on_page_view(
    state: DeviceState,
    view: PageView,
    detect_touch: DetectTouch,
    outputs: list[DeviceOutput],
    config: IdentityConfig,
) -> DeviceState:
    previous = state.last_view_ts
    touch = detect_touch(view, previous)
    state = replace(state, last_view_ts=view.ts if previous is None else max(previous, view.ts))
    if view.user_id is not None:
        state = _link(state, view.user_id, view, PAGE_VIEW_KIND, outputs, config)
        if not config.is_junk(view.user_id):
            if touch is not None:
                outputs.append(StitchedTouch(view.user_id, touch, logged_in=True))
            return state
    if touch is None:
        return state
    return _place_anonymous_touch(state, touch, outputs, config)


def _link(
    state: DeviceState,
    person_id: str,
    event: PageView | Signup,
    via: str,
    outputs: list[DeviceOutput],
    config: IdentityConfig,
) -> DeviceState:
    """Link `person_id` to the device at `event.ts`, or refuse with a reason.

    A junk user id is checked before a junk anonymous id, so each refused link has one reason.
    """
    reason = _junk_reason(person_id, event.anonymous_id, config)
    if reason is None and person_id in state.people:
        if state.public_since is not None and event.ts >= state.public_since:
            return state  # owners after the public instant never matter
        return replace(state, spans=_add_link(state.spans, event.ts, person_id, config))
    if reason is None and len(state.people) >= config.max_people_per_device:
        reason = PUBLIC_DEVICE
        public_since = event.ts if state.public_since is None else min(state.public_since, event.ts)
        state = replace(state, public_since=public_since)
    if reason is not None:
        outputs.append(LinkRefused(reason, event.anonymous_id, person_id, event.ts, event.event_id))
        return state
    outputs.extend(StitchedTouch(person_id, touch, logged_in=False) for touch in state.pending)
    outputs.append(Link(person_id, event.anonymous_id, event.ts, event.event_id, via))
    return replace(
        state,
        people=(*state.people, person_id),
        spans=_add_link(state.spans, event.ts, person_id, config),
        pending=(),
    )


def _junk_reason(person_id: str, anonymous_id: str, config: IdentityConfig) -> str | None:
    if config.is_junk(person_id):
        return JUNK_USER_ID
    if config.is_junk(anonymous_id):
        return JUNK_ANONYMOUS_ID
    return None


def _place_anonymous_touch(
    state: DeviceState, touch: Touch, outputs: list[DeviceOutput], config: IdentityConfig
) -> DeviceState:
    """Stitch an anonymous touch to its owner, keep it pending, or drop it with a reason."""
    if config.is_junk(touch.anonymous_id):
        outputs.append(TouchDropped(JUNK_ANONYMOUS_ID, touch))
    elif state.public_since is not None and touch.ts >= state.public_since:
        outputs.append(TouchDropped(PUBLIC_DEVICE, touch))
    elif state.spans:
        outputs.append(_stitch_to_owner(state, touch, config))
    else:
        return _keep_pending(state, touch, outputs, config)
    return state


def _stitch_to_owner(state: DeviceState, touch: Touch, config: IdentityConfig) -> DeviceOutput:
    """Owner at the touch's time; before the first link only within the lookback of it.

    Matches in-order processing: there a touch waits until the first link and has expired by
    then exactly when it lies more than `lookback_ms` before that link.
    """
    if state.spans[0].start_ts - touch.ts > config.lookback_ms:
        return TouchDropped(PENDING_EXPIRED, touch)
    return StitchedTouch(_owner_at(state.spans, touch.ts), touch, logged_in=False)


def _owner_at(spans: tuple[LinkSpan, ...], ts: int) -> str:
    """The person of the last span starting at or before `ts` (the first span before any)."""
    index = bisect_right(spans, ts, key=_span_start) - 1
    return spans[max(index, 0)].person_id


def _keep_pending(
    state: DeviceState, touch: Touch, outputs: list[DeviceOutput], config: IdentityConfig
) -> DeviceState:
    """Wait for the first link, in time order; the oldest touch goes when the bound is hit."""
    assert state.newest_ts is not None  # set by _advance
    if state.newest_ts - touch.ts > config.lookback_ms:
        outputs.append(TouchDropped(PENDING_EXPIRED, touch))
        return state
    pending = list(state.pending)
    insort(pending, touch, key=_touch_ts)
    if len(pending) > config.max_pending_touches:
        outputs.append(TouchDropped(PENDING_OVERFLOW, pending.pop(0)))
    return replace(state, pending=tuple(pending))


def _touch_ts(touch: Touch) -> int:
    return touch.ts


def _add_link(
    spans: tuple[LinkSpan, ...], ts: int, person_id: str, config: IdentityConfig
) -> tuple[LinkSpan, ...]:
    """The owner history with a link of `person_id` at `ts` placed in time.

    In time order this only extends or appends the last span, which is exact. A late link that
    lands inside another person's span splits it, keeping what is known of that person's links
    (its first and its last); that person's links in between are not remembered. Of two links at
    the same millisecond the one processed later counts as the more recent.
    """
    index = bisect_right(spans, ts, key=_span_start) - 1
    if index < 0:
        middle = [LinkSpan(ts, ts, person_id)]
    else:
        middle = _place_in_span(spans[index], ts, person_id)
    merged = _coalesce([*spans[: max(index, 0)], *middle, *spans[index + 1 :]])
    while len(merged) > config.max_link_spans:
        merged = _coalesce([merged[0], *merged[2:]])
    return tuple(merged)


def _place_in_span(span: LinkSpan, ts: int, person_id: str) -> list[LinkSpan]:
    if span.person_id == person_id:
        return [replace(span, end_ts=max(span.end_ts, ts))]
    if ts > span.end_ts:
        return [span, LinkSpan(ts, ts, person_id)]
    before = [LinkSpan(span.start_ts, span.start_ts, span.person_id)] if span.start_ts < ts else []
    after = [LinkSpan(span.end_ts, span.end_ts, span.person_id)] if span.end_ts > ts else []
    return [*before, LinkSpan(ts, ts, person_id), *after]


def _coalesce(spans: Iterable[LinkSpan]) -> list[LinkSpan]:
    """Merge adjacent spans of one person: nobody else linked between them."""
    result: list[LinkSpan] = []
    for span in spans:
        if result and result[-1].person_id == span.person_id:
            last = result.pop()
            span = LinkSpan(last.start_ts, max(last.end_ts, span.end_ts), span.person_id)
        result.append(span)
    return result


# ---------------------------------------------------------------------------------------------
# Person side.


@dataclass(frozen=True, slots=True)
class SourcedTrait:
    """One merged trait value and the signup it came from (`ts`, then `event_id`, decides)."""

    name: str
    value: str | int
    ts: int
    event_id: str


@dataclass(frozen=True, slots=True)
class PersonIdentity:
    """Who one person is: the user ids and anonymous ids that are them, and their traits.

    `person_id` is the key of the person's state; `user_ids` holds every user id that is this
    person (today only `person_id`; merging aliases appends here and unions the rest).
    """

    person_id: str
    user_ids: tuple[str, ...] = ()
    anonymous_ids: tuple[str, ...] = ()
    """Accepted devices, in acceptance order, at most `max_anonymous_ids_per_person`."""
    sourced_traits: tuple[SourcedTrait, ...] = ()
    """Per trait name the latest non-null value, sorted by name."""
    first_signup_ts: int | None = None

    @classmethod
    def new(cls, person_id: str) -> PersonIdentity:
        return cls(person_id=person_id, user_ids=(person_id,))

    @property
    def traits(self) -> Traits:
        return Traits(**{t.name: t.value for t in self.sourced_traits})

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "person_id": self.person_id,
            "user_ids": list(self.user_ids),
            "anonymous_ids": list(self.anonymous_ids),
            "traits": {
                t.name: {"value": t.value, "ts": t.ts, "event_id": t.event_id}
                for t in self.sourced_traits
            },
            "first_signup_ts": self.first_signup_ts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonIdentity:
        _check_version(data, cls.__name__)
        return cls(
            person_id=data["person_id"],
            user_ids=tuple(data["user_ids"]),
            anonymous_ids=tuple(data["anonymous_ids"]),
            sourced_traits=tuple(
                SourcedTrait(name, t["value"], t["ts"], t["event_id"])
                for name, t in sorted(data["traits"].items())
            ),
            first_signup_ts=data["first_signup_ts"],
        )


def accept_link(
    identity: PersonIdentity | None, link: Link, config: IdentityConfig
) -> tuple[PersonIdentity, bool, LinkRefused | None]:
    """Add the link's device to the person; a device beyond the per-person cap is refused."""
    identity, accepted = _claim_device(identity, link.person_id, link.anonymous_id, config)
    if accepted:
        return identity, True, None
    refusal = LinkRefused(
        PERSON_ANONYMOUS_ID_CAP, link.anonymous_id, link.person_id, link.ts, link.event_id
    )
    return identity, False, refusal


def accept_touch(
    identity: PersonIdentity | None, stitched: StitchedTouch, config: IdentityConfig
) -> tuple[PersonIdentity, bool]:
    """Whether the person takes a stitched touch.

    A logged-in touch is always taken (§10). A touch stitched through a device is taken when
    the device is the person's or can still become theirs; it then claims the device, because
    released touches arrive before the `Link` that released them and must be judged the same
    way as that link will be.
    """
    if stitched.logged_in:
        return identity or PersonIdentity.new(stitched.person_id), True
    return _claim_device(identity, stitched.person_id, stitched.touch.anonymous_id, config)


def apply_signup(identity: PersonIdentity | None, signup: SignupSeen) -> PersonIdentity:
    """Merge a signup: per trait the non-null value of the latest signup wins, by (ts, event_id).

    Comparing event times, not arrival, makes the result independent of the order signups
    arrive in, and applying the same signup twice changes nothing.
    """
    identity = identity or PersonIdentity.new(signup.person_id)
    merged = {t.name: t for t in identity.sourced_traits}
    for name, value in _non_null_traits(signup.traits):
        current = merged.get(name)
        if current is None or (current.ts, current.event_id) < (signup.ts, signup.event_id):
            merged[name] = SourcedTrait(name, value, signup.ts, signup.event_id)
    first = identity.first_signup_ts
    return replace(
        identity,
        sourced_traits=tuple(merged[name] for name in sorted(merged)),
        first_signup_ts=signup.ts if first is None else min(first, signup.ts),
    )


def _non_null_traits(traits: Traits) -> Iterator[tuple[str, str | int]]:
    for f in fields(Traits):
        value = getattr(traits, f.name)
        if value is not None:
            yield f.name, value


def _claim_device(
    identity: PersonIdentity | None, person_id: str, anonymous_id: str, config: IdentityConfig
) -> tuple[PersonIdentity, bool]:
    identity = identity or PersonIdentity.new(person_id)
    if anonymous_id in identity.anonymous_ids:
        return identity, True
    if len(identity.anonymous_ids) >= config.max_anonymous_ids_per_person:
        return identity, False
    return replace(identity, anonymous_ids=(*identity.anonymous_ids, anonymous_id)), True
