"""Segment-style messages (`page`, `identify`, `track`) → payloads of the wire contract.

The HTTP collector accepts the messages Segment's libraries send, so products already
instrumented for Segment can point them at Personify. Each message maps to at most one contract
event; the mapping only moves fields (docs/collector.md has the table), and the payload it
builds is then validated like any other (`processors.validation.decode`), so a mapped event is
accepted exactly when the same payload sent natively would be.

- `messageId` → `event_id` (a retried message keeps its id, so the pipeline drops the copy);
  `timestamp`, else `originalTimestamp`, else the time the collector received it → `ts`.
- `page` → `page_view/1`: `anonymousId`, `userId`, the URL and referrer from `properties`, else
  `context.page`; `context.campaign` → `campaign`.
- `identify` → `signup/1`: links `anonymousId` to `userId`; only the firmographic traits are
  kept (company, company size, industry, plan, country), never names or e-mail addresses.
- `track` → by event name (`DEFAULT_TRACK_EVENTS`, extended by configuration): a payment, a
  refund, a subscription change or a signup; amounts must be integer minor units in
  `properties.amount_minor` / `properties.mrr_minor` (Segment's `revenue` and `total` are major
  units as floats: refused, never converted). Any other name, and `screen`, `group` and `alias`,
  is `unmapped_event`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from processors.validation import Reason, Rejection
from schemas.contract import TopicKind

TrackMapping = Literal["payment", "refund", "subscription_change", "signup"]
TRACK_MAPPINGS: Final[tuple[TrackMapping, ...]] = (
    "payment", "refund", "subscription_change", "signup")

DEFAULT_TRACK_EVENTS: Final[Mapping[str, TrackMapping]] = {
    "Order Completed": "payment",
    "Order Refunded": "refund",
    "Subscription Changed": "subscription_change",
    "Signed Up": "signup",
}
"""Segment's e-commerce and B2B SaaS spec names, mapped to the contract's events."""

MAJOR_UNIT_FIELDS: Final = ("revenue", "total", "value", "price")
"""Segment's money fields: major units, usually floats; their presence explains a missing amount."""


@dataclass(frozen=True, slots=True)
class Mapped:
    """A contract payload built from a Segment message, not validated yet."""

    kind: TopicKind
    payload: dict[str, Any]
    describes: str
    """What it was mapped from, for messages: `Segment track 'Order Completed' → billing/1`."""


def to_contract(
    message: Mapping[str, Any], *, received_ms: int, track_events: Mapping[str, TrackMapping]
) -> Mapped | Rejection:
    """The contract payload `message` stands for, or why it stands for none."""
    kind = message.get("type")
    if kind == "page":
        return Mapped("page_view", _page_view(message, received_ms), "Segment page → page_view/1")
    if kind == "identify":
        payload = _signup(message, received_ms, _traits(_object(message, "traits")))
        return Mapped("signup", payload, "Segment identify → signup/1")
    if kind == "track":
        return _track(message, received_ms, track_events)
    return Rejection(
        Reason.UNMAPPED_EVENT,
        f"Segment {_quoted(kind)} messages map to no Personify event: the collector maps page, "
        "identify and track (docs/collector.md)",
    )


def _track(
    message: Mapping[str, Any], received_ms: int, track_events: Mapping[str, TrackMapping]
) -> Mapped | Rejection:
    name = message.get("event")
    mapping = track_events.get(name) if isinstance(name, str) else None
    if mapping is None:
        return Rejection(
            Reason.UNMAPPED_EVENT,
            f"Segment track {_quoted(name)} maps to no Personify event: the collector maps "
            f"page, identify and the track events {', '.join(sorted(track_events))} "
            "(docs/collector.md); map others in the collector's config",
        )
    target = "signup/1" if mapping == "signup" else "billing/1"
    describes = f"Segment track {_quoted(name)} → {target}"
    properties = _object(message, "properties")
    if mapping == "signup":
        return Mapped("signup", _signup(message, received_ms, _traits(properties)), describes)
    amount_field = "mrr_minor" if mapping == "subscription_change" else "amount_minor"
    if amount_field not in properties:
        found = [name for name in MAJOR_UNIT_FIELDS if name in properties]
        if found:
            return Rejection(
                Reason.MISSING_FIELD,
                f"{describes}: required 'properties.{amount_field}' is missing ('{found[0]}' is "
                "in major units and is not converted): send the amount as an integer of minor "
                f"units in properties.{amount_field} (4900 for 49.00)",
            )
    payload = _common(message, "billing/1", received_ms)
    _copy(payload, "user_id", message, "userId")
    payload["kind"] = mapping
    for field in _BILLING_FIELDS[mapping]:
        _copy(payload, field, properties, field)
    return Mapped("billing", payload, describes)


_BILLING_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "payment": ("amount_minor", "currency"),
    "refund": ("amount_minor", "currency", "refund_of"),
    "subscription_change": ("subscription_id", "plan", "mrr_minor", "currency"),
}


def _page_view(message: Mapping[str, Any], received_ms: int) -> dict[str, Any]:
    properties = _object(message, "properties")
    page = _object(_object(message, "context"), "page")
    payload = _common(message, "page_view/1", received_ms)
    _copy(payload, "anonymous_id", message, "anonymousId")
    payload["user_id"] = message.get("userId")
    url = properties.get("url") or page.get("url")
    if url is not None:
        payload["url"] = url
    payload["referrer"] = properties.get("referrer") or page.get("referrer") or None
    campaign = _object(_object(message, "context"), "campaign")
    if campaign:
        payload["campaign"] = {name: campaign[name] for name in _CAMPAIGN_FIELDS
                               if name in campaign}
    return payload


_CAMPAIGN_FIELDS: Final = ("source", "medium", "name", "term", "content")


def _signup(
    message: Mapping[str, Any], received_ms: int, traits: dict[str, Any] | None
) -> dict[str, Any]:
    payload = _common(message, "signup/1", received_ms)
    _copy(payload, "anonymous_id", message, "anonymousId")
    _copy(payload, "user_id", message, "userId")
    payload["traits"] = traits
    return payload


def _traits(source: Mapping[str, Any]) -> dict[str, Any] | None:
    """The contract's traits from Segment's reserved traits; everything else is left behind
    (names, e-mail addresses and free-form traits never enter the pipeline)."""
    company = source.get("company")
    company_object = company if isinstance(company, Mapping) else {}
    address = _object(source, "address")
    candidates = {
        "company": company if isinstance(company, str) else company_object.get("name"),
        "company_size": _first(source.get("company_size"), source.get("employees"),
                               company_object.get("employee_count")),
        "industry": _first(source.get("industry"), company_object.get("industry")),
        "plan": _first(source.get("plan"), company_object.get("plan")),
        "country": _first(source.get("country"), address.get("country")),
    }
    traits = {name: value for name, value in candidates.items() if value is not None}
    return traits or None


def _common(message: Mapping[str, Any], schema: str, received_ms: int) -> dict[str, Any]:
    payload: dict[str, Any] = {"schema": schema}
    _copy(payload, "event_id", message, "messageId")
    payload["ts"] = _first(message.get("timestamp"), message.get("originalTimestamp"),
                           received_ms)
    return payload


def _copy(target: dict[str, Any], name: str, source: Mapping[str, Any], source_name: str) -> None:
    """Copy a field only when present, so that a missing one is reported as missing."""
    if source_name in source:
        target[name] = source[source_name]


def _object(source: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = source.get(name)
    return value if isinstance(value, Mapping) else {}


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _quoted(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return f"'{text[:80]}'"
