"""Dead-letter records: a refused input message as a JSON-able side output (DESIGN.md §2, §8.6).

Nothing is lost: the record keeps the original value (base64), where it came from (topic, partition,
offset) and why it was refused, so the sender can fix the producer and replay it. The shape is
`schemas/dead_letter.v1.schema.json`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from processors.validation import REASONS

DEAD_LETTER_SCHEMA: Final = "dead_letter/1"
MAX_ORIGINAL_BYTES: Final = 256 * 1024
"""Original bytes kept: base64 of a value up to Kafka's default 1 MiB would not fit a message."""
MAX_PREVIEW_CHARS: Final = 4096
MAX_MESSAGE_CHARS: Final = 2048
HTTP_PARTITION: Final = -1
HTTP_OFFSET: Final = -1
"""Partition and offset of an event refused by the HTTP collector: it never reached a topic."""


@dataclass(frozen=True, slots=True)
class HttpOrigin:
    """Where in which request an event refused by the HTTP collector came: (topic, partition,
    offset) is the same for all of them, so these identify one dead letter."""

    source: str
    request_id: str
    index: int


def dead_letter_record(
    *,
    raw: bytes,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    message: str,
    ts_ms: int,
    http: HttpOrigin | None = None,
) -> dict[str, Any]:
    """The dead-letter message for `raw`; `reason` must be one of `REASONS` (a closed label set).

    `http` is given for events the HTTP collector refused before they reached any topic: then
    `topic` is `http:<route>` and partition and offset are -1 (`HTTP_PARTITION`, `HTTP_OFFSET`).
    """
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}; expected one of {REASONS}")
    kept = raw[:MAX_ORIGINAL_BYTES]
    record = {
        "schema": DEAD_LETTER_SCHEMA,
        "reason": str(reason),
        "message": message[:MAX_MESSAGE_CHARS],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "ts": ts_ms,
        "original_b64": base64.b64encode(kept).decode("ascii"),
        "original_size": len(raw),
        "original_truncated": len(kept) < len(raw),
        "original_preview": _text_preview(raw),
    }
    if http is not None:
        record["http"] = {"source": http.source, "request_id": http.request_id,
                          "index": http.index}
    return record


def _text_preview(raw: bytes) -> str | None:
    """The first characters of `raw` as text, or None when it is not valid UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[:MAX_PREVIEW_CHARS]
