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

from processors.identity import (
    Claim,
    ClaimedTouch,
    SignupSeen,
    touch_from_list,
    touch_to_list,
)
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

    @property
    def origin(self) -> str:
        """The input message's identity: the same after a re-read, different for a copy."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Sourced:
    """A validated input event with its source."""

    event: Event
    source: Source


StageMessage = Claim | SignupSeen | Sourced

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


def fields_dict(record: Any) -> dict[str, Any]:
    """A flat dataclass's fields by name (nested records stay records)."""
    return {name: getattr(record, name) for name in _field_names(type(record))}


def event_to_dict(event: Event) -> dict[str, Any]:
    data = fields_dict(event)
    if isinstance(event, PageView) and event.campaign is not None:
        data["campaign"] = fields_dict(event.campaign)
    if isinstance(event, Signup):
        data["traits"] = fields_dict(event.traits)
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


def encode(message: StageMessage) -> dict[str, Any]:
    if isinstance(message, Sourced):
        source = message.source
        return {"k": "event", "e": event_to_dict(message.event),
                "src": {"topic": source.topic, "partition": source.partition,
                        "offset": source.offset, "raw": source.raw}}
    if isinstance(message, Claim):
        return {"k": "claim", "p": message.person_id, "a": message.anonymous_id,
                "l": message.linked_ts,
                "t": [[touch_to_list(c.touch), c.logged_in] for c in message.touches]}
    return {"k": "signup", **fields_dict(message), "traits": fields_dict(message.traits)}


def decode(data: dict[str, Any]) -> StageMessage:
    kind = data["k"]
    if kind == "event":
        source = data["src"]
        return Sourced(event_from_dict(data["e"]), Source(
            source["topic"], source["partition"], source["offset"], source["raw"]))
    if kind == "claim":
        return Claim(data["p"], data["a"], data["l"],
                     tuple(ClaimedTouch(touch_from_list(t), li) for t, li in data["t"]))
    values = {key: value for key, value in data.items() if key != "k"}
    return SignupSeen(**{**values, "traits": Traits(**values["traits"])})


BATCH_RECORD_BYTES = 256 * 1024
"""A batch is split into records of about this size (the broker refuses records over 1 MB)."""


def encode_batch(items: list[tuple[str, dict[str, Any]]],
                 max_bytes: int = BATCH_RECORD_BYTES) -> list[bytes]:
    """Internal records for one partition of the next stage: (key, encoded message) items in
    the order they were produced, in records of at most about `max_bytes` each (an item larger
    than that travels alone). A stage pays Faust's per-record cost (a consume, a send, a state
    write per key) once per batch instead of once per event."""
    chunks: list[list[bytes]] = [[]]
    size = 0
    for key, item in items:
        encoded = orjson.dumps([key, item])
        if chunks[-1] and size + len(encoded) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(encoded)
        size += len(encoded) + 1
    return [b'{"k":"batch","items":[' + b",".join(chunk) + b"]}" for chunk in chunks if chunk]


def decode_batch(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (key, item) pairs in `data`; ValueError when `data` is not a batch record."""
    if not isinstance(data, dict) or data.get("k") != "batch" or not isinstance(
            data.get("items"), list):
        raise ValueError("not a batch of internal records")
    return [(key, item) for key, item in data["items"]]
