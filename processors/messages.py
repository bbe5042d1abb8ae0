"""Internal records between the worker's stages, as JSON-able dicts (not a public contract).

Each record names its kind in `k`; billing and device records carry the source coordinates
and original text of the input event, so a later stage can still dead-letter it faithfully.
On the internal topics they travel in batches (`Batch`), each item with the key it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import orjson

from processors.identity import Link, SignupSeen, StitchedTouch, touch_from_dict, touch_to_dict
from schemas.events import (
    Campaign,
    Event,
    PageView,
    Payment,
    Refund,
    Signup,
    SubscriptionChange,
    Traits,
)


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input event was read: enough to find it again and to dead-letter it."""

    topic: str
    partition: int
    offset: int
    raw: str
    validated_at_ms: int = 0
    """Wall-clock time the event was validated (for watermark freshness, DESIGN.md §9)."""

    @property
    def origin(self) -> str:
        """The input message's identity: the same after a re-read, different for a copy."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Sourced:
    """A validated input event with its source."""

    event: Event
    source: Source


@dataclass(frozen=True, slots=True)
class ReleaseHeld:
    """Bill the person's held events that the watermark has passed."""

    person_id: str
    upto_ms: int
    fresh_ms: int


PersonMessage = StitchedTouch | Link | SignupSeen | Sourced | ReleaseHeld

_EVENT_TYPES: dict[str, type] = {
    "page_view": PageView,
    "signup": Signup,
    "payment": Payment,
    "refund": Refund,
    "subscription_change": SubscriptionChange,
}
_KIND_OF = {cls: kind for kind, cls in _EVENT_TYPES.items()}


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _flat(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _field_names(type(record))}


def event_to_dict(event: Event) -> dict[str, Any]:
    data = _flat(event)
    if isinstance(event, PageView) and event.campaign is not None:
        data["campaign"] = _flat(event.campaign)
    if isinstance(event, Signup):
        data["traits"] = _flat(event.traits)
    data["kind"] = _KIND_OF[type(event)]
    return data


def event_from_dict(data: dict[str, Any]) -> Event:
    values = dict(data)
    cls = _EVENT_TYPES[values.pop("kind")]
    if cls is PageView and values.get("campaign") is not None:
        values["campaign"] = Campaign(**values["campaign"])
    if cls is Signup:
        values["traits"] = Traits(**values["traits"])
    return cls(**values)


def encode(message: PersonMessage | Sourced) -> dict[str, Any]:
    if isinstance(message, Sourced):
        return {"k": "event", "e": event_to_dict(message.event), "src": _flat(message.source)}
    if isinstance(message, StitchedTouch):
        return {"k": "touch", "p": message.person_id, "t": touch_to_dict(message.touch),
                "li": message.logged_in}
    if isinstance(message, Link):
        return {"k": "link", **_flat(message)}
    if isinstance(message, SignupSeen):
        return {"k": "signup", **_flat(message), "traits": _flat(message.traits)}
    return {"k": "release", "person_id": message.person_id, "upto_ms": message.upto_ms,
            "fresh_ms": message.fresh_ms}


def decode(data: dict[str, Any]) -> PersonMessage:
    kind = data["k"]
    if kind == "event":
        return Sourced(event_from_dict(data["e"]), Source(**data["src"]))
    if kind == "touch":
        return StitchedTouch(data["p"], touch_from_dict(data["t"]), data["li"])
    values = {key: value for key, value in data.items() if key != "k"}
    if kind == "link":
        return Link(**values)
    if kind == "signup":
        return SignupSeen(**{**values, "traits": Traits(**values["traits"])})
    return ReleaseHeld(**values)


@dataclass(frozen=True, slots=True)
class Batch:
    """Internal records for one partition of the next stage, in one Kafka record.

    A stage pays Faust's per-record cost (a consume, a send, a state write per key) once per
    batch instead of once per event. `items` are (key, encoded message) in the order they were
    produced; `mark` is the touch watermark that follows them (watermarks.py), if any."""

    items: list[tuple[str, dict[str, Any]]]
    mark: dict[str, Any] | None = None


BATCH_RECORD_BYTES = 256 * 1024
"""A batch is split into records of about this size (the broker refuses records over 1 MB)."""


def encode_batch(batch: Batch, max_bytes: int = BATCH_RECORD_BYTES) -> list[bytes]:
    """`batch` as records of at most about `max_bytes` each (an item larger than that travels
    alone); only the last record carries the mark, which covers them all."""
    chunks: list[list[bytes]] = [[]]
    size = 0
    for key, item in batch.items:
        encoded = orjson.dumps([key, item])
        if chunks[-1] and size + len(encoded) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(encoded)
        size += len(encoded) + 1
    last = len(chunks) - 1
    return [b'{"k":"batch","items":[' + b",".join(chunk) + b'],"wm":'
            + orjson.dumps(batch.mark if number == last else None) + b"}"
            for number, chunk in enumerate(chunks)]


def decode_batch(data: Any) -> Batch:
    """The batch in `data`; ValueError when `data` is not a batch record."""
    if not isinstance(data, dict) or data.get("k") != "batch" or not isinstance(
            data.get("items"), list):
        raise ValueError("not a batch of internal records")
    return Batch([(key, item) for key, item in data["items"]], data.get("wm"))
