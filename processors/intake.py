"""What the HTTP collector makes of a request body: per event, accepted (topic, key, bytes) or
refused (a dead-letter reason, what to fix, the bytes as sent).

The collector applies the worker's own edge validation (`processors.validation.decode`) to the
exact bytes it will produce, so an event it accepts is one the worker accepts too (only the
stateful checks, duplicates and refunds, stay with the worker). Items of a batch are either
contract events (they carry `schema`, which names the topic) or Segment-style messages (they
carry `type`, mapped by `processors.segment`); both may be mixed in one batch.

Invariant: every item of a body is exactly one `Accepted` or one `Refused`, in order; a body
that is not a JSON batch is refused as one item; nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from processors.segment import DEFAULT_TRACK_EVENTS, TrackMapping, to_contract
from processors.validation import Reason, Rejection, ValidationConfig, decode
from schemas.contract import INPUT_SCHEMAS, TopicKind
from schemas.events import BillingEvent, InputEvent, Spend

KIND_BY_SCHEMA: Final[Mapping[str, TopicKind]] = {
    schema: kind for kind, schema in INPUT_SCHEMAS.items()}
WRITE_KEY_FIELD: Final = "writeKey"
"""Where Segment's browser library puts the write key when it cannot send a header (sendBeacon)."""


@dataclass(frozen=True, slots=True)
class IntakeRules:
    validation: ValidationConfig
    """The worker's validation rules (currency table, time range, size per event)."""
    track_events: Mapping[str, TrackMapping] = field(
        default_factory=lambda: dict(DEFAULT_TRACK_EVENTS))
    """Segment `track` event names → the contract event they stand for."""


@dataclass(frozen=True, slots=True)
class Accepted:
    kind: TopicKind
    key: str
    """The partition key the worker expects: `user_id` for billing, `source/medium/campaign`
    for spend, else `anonymous_id`."""
    value: bytes
    """The contract event's bytes, as validated."""
    event_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    message: str
    original: bytes
    """The item as the sender sent it (re-serialised compactly), for the dead letter."""
    event_id: str | None
    """The sender's id for it, when it had one (`event_id` or Segment's `messageId`)."""


Outcome = Accepted | Refused


def parse_body(body: bytes) -> dict[str, Any] | Refused:
    """The JSON object of a request body, or the whole body refused as one item."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return Refused(Reason.NOT_JSON, f"the request body is not UTF-8 JSON ({error})", body,
                       None)
    if not isinstance(document, dict):
        return Refused(Reason.NOT_AN_OBJECT,
                       "the request body must be a JSON object: {\"batch\": [...]} or one event",
                       body, None)
    return document


def batch_items(document: Mapping[str, Any], body: bytes) -> list[Any] | Refused:
    """The items of `{"batch": [...]}` (Personify's and Segment's batch shape)."""
    batch = document.get("batch")
    if isinstance(batch, list):
        return batch
    if batch is None:
        return Refused(Reason.MISSING_FIELD,
                       "required field 'batch' is missing: post {\"batch\": [event, ...]}",
                       without_write_key(document, body), None)
    return Refused(Reason.WRONG_TYPE, "'batch' must be an array of events",
                   without_write_key(document, body), None)


def single_item(document: Mapping[str, Any], route_type: str) -> dict[str, Any]:
    """The Segment message of a single-event route (`/v1/track`): the route gives its type."""
    item = {name: value for name, value in document.items() if name != WRITE_KEY_FIELD}
    item.setdefault("type", route_type)
    return item


def without_write_key(document: Mapping[str, Any], body: bytes) -> bytes:
    """The body as kept in a dead letter: without a write key sent in it."""
    if WRITE_KEY_FIELD not in document:
        return body
    return orjson.dumps({k: v for k, v in document.items() if k != WRITE_KEY_FIELD})


def read_item(
    item: Any, *, allowed: frozenset[TopicKind], now_ms: int, rules: IntakeRules
) -> Outcome:
    """One batch item → accepted or refused; never raises."""
    original = orjson.dumps(item)
    if not isinstance(item, dict):
        return Refused(Reason.NOT_AN_OBJECT, "each event must be a JSON object", original, None)
    if "schema" in item:
        return _contract_event(item, original, allowed, now_ms, rules)
    if "type" in item:
        return _segment_message(item, original, allowed, now_ms, rules)
    return Refused(Reason.MISSING_FIELD,
                   "an event needs 'schema' (a Personify event: page_view/1, signup/1, "
                   "billing/1, spend/1) or 'type' (a Segment message: page, identify, track)",
                   original, _id(item, "event_id"))


def _contract_event(
    item: dict[str, Any], original: bytes, allowed: frozenset[TopicKind], now_ms: int,
    rules: IntakeRules,
) -> Outcome:
    schema = item["schema"]
    kind = KIND_BY_SCHEMA.get(schema) if isinstance(schema, str) else None
    event_id = _id(item, "event_id")
    if kind is None:
        return Refused(Reason.UNKNOWN_SCHEMA,
                       f"schema {_short(schema)} is none of {', '.join(KIND_BY_SCHEMA)}",
                       original, event_id)
    return _validated(kind, original, original, "", allowed, now_ms, rules, event_id)


def _segment_message(
    item: dict[str, Any], original: bytes, allowed: frozenset[TopicKind], now_ms: int,
    rules: IntakeRules,
) -> Outcome:
    event_id = _id(item, "messageId")
    mapped = to_contract(item, received_ms=now_ms, track_events=rules.track_events)
    if isinstance(mapped, Rejection):
        return Refused(mapped.reason, mapped.message, original, event_id)
    value = orjson.dumps(mapped.payload)
    return _validated(mapped.kind, value, original, f"{mapped.describes}: ", allowed, now_ms,
                      rules, event_id)


def _validated(
    kind: TopicKind, value: bytes, original: bytes, context: str,
    allowed: frozenset[TopicKind], now_ms: int, rules: IntakeRules, event_id: str | None,
) -> Outcome:
    if kind not in allowed:
        return Refused(Reason.SOURCE_NOT_ALLOWED,
                       f"{context}this write key's source may not send {INPUT_SCHEMAS[kind]} "
                       f"events (it may send: {', '.join(sorted(allowed)) or 'nothing'})",
                       original, event_id)
    event = decode(value, kind, now_ms=now_ms, config=rules.validation)
    if isinstance(event, Rejection):
        return Refused(event.reason, f"{context}{event.message}", original, event_id)
    return Accepted(kind, _key(event), value, event.event_id)


def _key(event: InputEvent) -> str:
    """The topic's key: the campaign for spend, the user for billing, else the device."""
    if isinstance(event, Spend):
        return event.key
    return event.user_id if isinstance(event, BillingEvent) else event.anonymous_id


def _id(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else f"'{value}'"
    return text[:80]
