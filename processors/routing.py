"""The input stage's decision for one raw input message: refused, forwarded to a device key, or
dropped as a touch of nobody. Pure, so the stage around it is only reading and writing Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.config import PipelineConfig
from processors.identity import JUNK_ANONYMOUS_ID, device_key
from processors.messages import Source, Sourced, encode
from processors.validation import Rejection, decode
from schemas.contract import TopicKind
from schemas.events import PageView, Signup


@dataclass(frozen=True, slots=True)
class Forward:
    """A valid event for the device stage: its key there and the encoded message."""

    key: str
    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dropped:
    """A valid page view or signup that belongs to no device (a junk anonymous id and no
    user): counted, not forwarded."""

    reason: str = JUNK_ANONYMOUS_ID


def route_input(raw: bytes, kind: TopicKind, topic: str, partition: int, offset: int, *,
                now_ms: int, config: PipelineConfig) -> Forward | Dropped | Rejection:
    """Page views and signups go to their device; billing goes to its user, passing the device
    stage untouched (the same two hops as the touches it usually follows)."""
    event = decode(raw, kind, now_ms=now_ms, config=config.validation)
    if isinstance(event, Rejection):
        return event
    if isinstance(event, (PageView, Signup)):
        key = device_key(event, config.identity)
        if key is None:
            return Dropped()
    else:
        key = event.user_id
    return Forward(key, encode(Sourced(event, Source(topic, partition, offset, raw.decode()))))
