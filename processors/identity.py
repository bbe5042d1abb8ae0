"""Identity stitching: devices (anonymous ids) to people (user ids), by event time.

A device's state is the set of its facts — page views and links, each kept once by event id —
and every decision is derived from those facts sorted by event time (`derive_device`), never
from the order they arrived in. `step_device` adds a batch of facts, derives again and sends
each person whose share of the device changed a `Claim`: the whole share, so the person side
only ever replaces it (a late link that moves touches to someone else sends both people their
new shares). The rules, applied in `(ts, event_id)` order:

* An event carrying both ids links them (a signup always, a logged-in page view too), unless
  the user id is junk, the device is junk, or the device is full: the link that would give it
  its `max_people_per_device + 1`-th distinct person is refused and the device is public from
  that link's time on.
* A logged-in page view's touch belongs to its `user_id`, even when its link is refused.
* An anonymous touch belongs to the person most recently linked at the touch's time. A touch
  before the first link belongs to the first person linked when at most `lookback_ms` before
  that link; with no link yet it is pending (stitched to nobody for now).
* On a public device, anonymous touches at or after `public_since` go to nobody.

The person side (`accepted_devices`) admits a person's devices in the order of their first
link's time, up to `max_anonymous_ids_per_person`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from operator import attrgetter
from typing import Any

from processors.junk import is_junk_id
from processors.touch import Touch, in_event_time
from schemas.events import PageView, Signup, Traits

DAY_MS = 86_400_000
STATE_VERSION = 2

PAGE_VIEW_KIND = "page_view"
SIGNUP_KIND = "signup"

JUNK_DEVICE_PREFIX = "\x00user:"
"""Key prefix of the device that holds a user's page views and signups sent with a junk
anonymous id: their visits are detected on the user's own key (`device_key`)."""

# Why a link is refused (a closed set: metric label values).
JUNK_ANONYMOUS_ID = "junk_anonymous_id"
JUNK_USER_ID = "junk_user_id"
PUBLIC_DEVICE = "public_device"
PERSON_ANONYMOUS_ID_CAP = "person_anonymous_id_cap"
REFUSAL_REASONS = (JUNK_ANONYMOUS_ID, JUNK_USER_ID, PUBLIC_DEVICE, PERSON_ANONYMOUS_ID_CAP)

# Why a touch goes to nobody (a closed set: metric label values).
PENDING_EXPIRED = "pending_expired"
PENDING_OVERFLOW = "pending_overflow"
DROP_REASONS = (JUNK_ANONYMOUS_ID, PUBLIC_DEVICE, PENDING_EXPIRED, PENDING_OVERFLOW,
                PERSON_ANONYMOUS_ID_CAP)


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    max_people_per_device: int = 5
    """Distinct people a device may be linked to; the next one makes it a public device."""
    max_anonymous_ids_per_person: int = 100
    """Devices one person may own, by first link time; later ones are refused."""
    lookback_ms: int = 90 * DAY_MS
    """How far before a device's first link its anonymous touches are still stitched to it."""
    max_pending_touches: int = 200
    """Touches before a device's first link that may be stitched to it: the newest ones."""
    max_device_views: int = 2000
    """Page views a device keeps (the newest by event time): visits are detected over them."""
    max_device_links: int = 500
    """Links a device keeps (the earliest by event time: they decide who owns it)."""
    junk_block_list: frozenset[str] = frozenset()
    """Ids that are junk in this deployment, on top of the built-in ones (`processors.junk`)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"IdentityConfig.{f.name} must be >= 1, got {value}")

    def is_junk(self, value: str | None) -> bool:
        return _is_junk(value, self.junk_block_list)


IDS_CACHED = 65536
"""Ids whose junk check is kept: a device's and a person's ids are checked on every step."""
_is_junk = lru_cache(maxsize=IDS_CACHED)(is_junk_id)


def device_key(event: PageView | Signup, config: IdentityConfig) -> str | None:
    """The device an event belongs to: its anonymous id; for a junk anonymous id the user's own
    junk device (None when the user id is junk or absent too: the event links nothing)."""
    if not config.is_junk(event.anonymous_id):
        return event.anonymous_id
    if event.user_id is None or config.is_junk(event.user_id):
        return None
    return JUNK_DEVICE_PREFIX + event.user_id


# ---------------------------------------------------------------------------------------------
# Facts and state.


@dataclass(frozen=True, slots=True)
class ViewFact:
    """A page view as visit detection needs it; `touch` is what it is when it starts a visit."""

    event_id: str
    ts: int
    user_id: str | None
    """The non-junk user id of a logged-in view, else None."""
    intrinsic: bool
    """Starts a visit whatever came before (campaign data, external referrer)."""
    touch: Touch
    origin: str = ""


@dataclass(frozen=True, slots=True)
class LinkFact:
    event_id: str
    ts: int
    person_id: str
    via: str
    origin: str = ""


def touch_to_list(touch: Touch) -> list[Any]:
    """The fields of `Touch` in their order (spelled out: this runs for every stored touch)."""
    return [touch.event_id, touch.ts, touch.anonymous_id, touch.channel, touch.source,
            touch.medium, touch.campaign]


def touch_from_list(values: list[Any]) -> Touch:
    return Touch(*values)


def touch_to_dict(touch: Touch) -> dict[str, Any]:
    return {"event_id": touch.event_id, "ts": touch.ts, "anonymous_id": touch.anonymous_id,
            "channel": touch.channel, "source": touch.source, "medium": touch.medium,
            "campaign": touch.campaign}


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One device's facts, each sorted by `(ts, event_id)`, and the shares last sent."""

    views: tuple[ViewFact, ...] = ()
    links: tuple[LinkFact, ...] = ()
    sent: Mapping[str, tuple[int | None, tuple[str, ...]]] = field(default_factory=dict)
    """Person → (linked_ts, touch event ids) of the last `Claim` sent to them."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "views": [[v.event_id, v.ts, v.user_id, v.intrinsic, touch_to_list(v.touch),
                       v.origin] for v in self.views],
            "links": [[link.event_id, link.ts, link.person_id, link.via, link.origin]
                      for link in self.links],
            "sent": {person: [linked, list(ids)] for person, (linked, ids) in self.sent.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceState:
        _check_version(data, cls.__name__)
        return cls(
            views=tuple(ViewFact(e, ts, user, intrinsic, touch_from_list(touch), origin)
                        for e, ts, user, intrinsic, touch, origin in data["views"]),
            links=tuple(LinkFact(*link) for link in data["links"]),
            sent={person: (linked, tuple(ids)) for person, (linked, ids) in data["sent"].items()},
        )


def _check_version(data: dict[str, Any], name: str) -> None:
    if data.get("v") != STATE_VERSION:
        raise ValueError(f"{name} version {data.get('v')!r} is not {STATE_VERSION}")


# ---------------------------------------------------------------------------------------------
# Decisions sent downstream.


@dataclass(frozen=True, slots=True)
class ClaimedTouch:
    touch: Touch
    logged_in: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """Everything one device gives one person, replacing what it gave before.

    `linked_ts` is the person's first accepted link to the device (None when only logged-in
    views of theirs are on it, or nothing at all: the person lost the device).
    """

    person_id: str
    anonymous_id: str
    linked_ts: int | None
    touches: tuple[ClaimedTouch, ...]


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
    reason: str
    event_id: str


@dataclass(frozen=True, slots=True)
class TouchDropped:
    reason: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A later copy of an event already kept; `replay` when from the very same input message
    (the pipeline re-reading after a crash), not a second copy sent by a producer."""

    event_id: str
    kind: str
    replay: bool


@dataclass(frozen=True, slots=True)
class Stitched:
    """How many touches belong to someone now that belonged to nobody before."""

    count: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """An input event kept as a fact (for `consumed = processed + duplicates + dead letters`)."""

    kind: str


DeviceOutput = Claim | SignupSeen | LinkRefused | TouchDropped | Stitched | Duplicate | Accepted
DetectTouch = Callable[[PageView, int | None], Touch | None]
"""A view's touch if it starts a visit after a view at `previous_view_ts` (None: the first);
the touch itself does not depend on `previous_view_ts`, only whether there is one."""


# ---------------------------------------------------------------------------------------------
# Deriving a device's decisions from its facts.


@dataclass(frozen=True, slots=True)
class DeviceDecisions:
    claims: dict[str, Claim]
    refused: dict[str, str]
    """Link event id → reason."""
    dropped: dict[str, str]
    """Touch event id → reason."""
    pending: tuple[str, ...]
    """Touches waiting for the device's first link."""


def derive_device(anonymous_id: str, state: DeviceState, *, session_timeout_ms: int,
                  config: IdentityConfig) -> DeviceDecisions:
    """Who owns what on this device, from its facts alone (order of arrival plays no part)."""
    junk_device = anonymous_id.startswith(JUNK_DEVICE_PREFIX) or config.is_junk(anonymous_id)
    first_link: dict[str, int] = {}
    timeline_ts: list[int] = []
    timeline_person: list[str] = []
    public_since: int | None = None
    refused: dict[str, str] = {}
    for link in state.links:
        reason = JUNK_USER_ID if config.is_junk(link.person_id) else (
            JUNK_ANONYMOUS_ID if junk_device else None)
        if reason is None and link.person_id in first_link:
            if public_since is None:
                timeline_ts.append(link.ts)
                timeline_person.append(link.person_id)
            continue
        if reason is None and len(first_link) >= config.max_people_per_device:
            reason = PUBLIC_DEVICE
            public_since = link.ts if public_since is None else public_since
        if reason is not None:
            refused.setdefault(link.event_id, reason)
            continue
        first_link[link.person_id] = link.ts
        timeline_ts.append(link.ts)
        timeline_person.append(link.person_id)

    owned: dict[str, list[ClaimedTouch]] = {person: [] for person in first_link}
    dropped: dict[str, str] = {}
    early: list[Touch] = []
    previous_ts: int | None = None
    for view in state.views:
        starts = (previous_ts is None or view.intrinsic
                  or view.ts - previous_ts >= session_timeout_ms)
        previous_ts = view.ts
        if not starts:
            continue
        touch = view.touch
        if view.user_id is not None:
            owned.setdefault(view.user_id, []).append(ClaimedTouch(touch, True))
        elif junk_device:
            dropped[touch.event_id] = JUNK_ANONYMOUS_ID
        elif public_since is not None and touch.ts >= public_since:
            dropped[touch.event_id] = PUBLIC_DEVICE
        elif not timeline_ts or touch.ts < timeline_ts[0]:
            early.append(touch)
        else:
            owner = timeline_person[bisect_right(timeline_ts, touch.ts) - 1]
            owned[owner].append(ClaimedTouch(touch, False))

    pending: list[str] = []
    kept = set(t.event_id for t in early[-config.max_pending_touches:])
    for touch in early:
        if touch.event_id not in kept:
            dropped[touch.event_id] = PENDING_OVERFLOW
        elif not timeline_ts:
            pending.append(touch.event_id)
        elif timeline_ts[0] - touch.ts > config.lookback_ms:
            dropped[touch.event_id] = PENDING_EXPIRED
        else:
            owned[timeline_person[0]].append(ClaimedTouch(touch, False))

    claims = {
        person: Claim(person, anonymous_id, first_link.get(person),
                      tuple(sorted(touches, key=_claimed_order)))
        for person, touches in owned.items()
    }
    return DeviceDecisions(claims, refused, dropped, tuple(pending))


_claimed_order = attrgetter("touch.ts", "touch.event_id")


def _claim_key(claim: Claim) -> tuple[int | None, tuple[str, ...]]:
    return (claim.linked_ts,
            tuple(("L" if c.logged_in else "A") + c.touch.event_id for c in claim.touches))


# ---------------------------------------------------------------------------------------------
# The device step.


@dataclass(frozen=True, slots=True)
class DeviceInput:
    """A page view or signup of one device, with the input message it was read from."""

    event: PageView | Signup
    origin: str = ""


def step_device(
    state: DeviceState | None,
    inputs: Iterable[DeviceInput],
    *,
    anonymous_id: str,
    detect_touch: DetectTouch,
    session_timeout_ms: int,
    config: IdentityConfig,
) -> tuple[DeviceState, list[DeviceOutput]]:
    """Add a batch of one device's events; return the new state and what to send.

    A copy of a kept event (same kind and event id) changes nothing. Every person whose share
    changed gets a `Claim`; refusals are reported for the links of this batch, and a touch is
    reported dropped in the step that drops it (a later link can expire a touch kept pending
    before), whatever the batches.
    """
    state = previous = state or DeviceState()
    views = {v.event_id: v for v in state.views}
    links = {(link.via, link.event_id): link for link in state.links}
    outputs: list[DeviceOutput] = []
    new_links: list[str] = []
    new_touches: list[str] = []
    for item in inputs:
        event = item.event
        if isinstance(event, Signup):
            kind, known = SIGNUP_KIND, links.get((SIGNUP_KIND, event.event_id))
        else:
            kind, known = PAGE_VIEW_KIND, views.get(event.event_id)
        if known is not None:
            outputs.append(Duplicate(event.event_id, kind,
                                     bool(item.origin) and item.origin == known.origin))
            continue
        outputs.append(Accepted(kind))
        if isinstance(event, Signup):
            links[(kind, event.event_id)] = LinkFact(event.event_id, event.ts, event.user_id,
                                                     kind, item.origin)
            new_links.append(event.event_id)
            if not config.is_junk(event.user_id):
                outputs.append(SignupSeen(event.user_id, event.anonymous_id, event.ts,
                                          event.event_id, event.traits))
            continue
        user = None if config.is_junk(event.user_id) else event.user_id
        intrinsic = detect_touch(event, event.ts)  # a visit even right after another view
        candidate = intrinsic or detect_touch(event, None)
        assert candidate is not None, "a device's first view always starts a visit"
        views[event.event_id] = ViewFact(event.event_id, event.ts, user, intrinsic is not None,
                                         candidate, item.origin)
        new_touches.append(event.event_id)
        if event.user_id is not None:
            links[(kind, event.event_id)] = LinkFact(event.event_id, event.ts, event.user_id,
                                                     kind, item.origin)
            new_links.append(event.event_id)
    if not new_touches and not new_links:
        return state, outputs
    state = DeviceState(
        views=tuple(sorted(views.values(), key=in_event_time))[-config.max_device_views:],
        links=tuple(sorted(links.values(), key=in_event_time))[:config.max_device_links],
        sent=state.sent,
    )
    decisions = derive_device(anonymous_id, state, session_timeout_ms=session_timeout_ms,
                              config=config)
    outputs.extend(LinkRefused(decisions.refused[e], e) for e in new_links
                   if e in decisions.refused)
    dropped_before = derive_device(
        anonymous_id, previous, session_timeout_ms=session_timeout_ms,
        config=config).dropped if decisions.dropped and previous.views else {}
    outputs.extend(TouchDropped(reason, e) for e, reason in decisions.dropped.items()
                   if e not in dropped_before)
    sent = dict(state.sent)
    claimed = len(outputs)
    for person in sorted({*sent, *decisions.claims}):
        claim = decisions.claims.get(person) or Claim(person, anonymous_id, None, ())
        key = _claim_key(claim)
        if sent.get(person, (None, ())) != key:
            outputs.append(claim)
        if key == (None, ()):
            sent.pop(person, None)
        else:
            sent[person] = key
    if len(outputs) > claimed and (stitched := len(_owned(sent) - _owned(state.sent))):
        outputs.append(Stitched(stitched))  # (no claim sent: `sent` is as it was)
    return DeviceState(state.views, state.links, sent), outputs


def _owned(sent: Mapping[str, tuple[int | None, tuple[str, ...]]]) -> set[str]:
    return {touch_id[1:] for _, touch_ids in sent.values() for touch_id in touch_ids}


# ---------------------------------------------------------------------------------------------
# Person side.


def accepted_devices(claims: Mapping[str, Claim], config: IdentityConfig) -> tuple[str, ...]:
    """The person's devices: linked ones in order of first link time (then id), up to the cap."""
    linked = sorted((c.linked_ts, anonymous_id) for anonymous_id, c in claims.items()
                    if c.linked_ts is not None)
    return tuple(anonymous_id for _, anonymous_id in linked[:config.max_anonymous_ids_per_person])
