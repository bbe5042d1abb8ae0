"""Dead-letter records: a refused input message as a JSON-able side output (DESIGN.md §2, §8.6).

Nothing is lost: the record keeps the original value (base64), where it came from (topic, partition,
offset) and why it was refused, so the sender can fix the producer and replay it. The shape is
`schemas/dead_letter.v1.schema.json`.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from processors.validation import REASONS

DEAD_LETTER_SCHEMA: Final = "dead_letter/1"
MAX_ORIGINAL_BYTES: Final = 256 * 1024
"""Original bytes kept: base64 of a value up to Kafka's default 1 MiB would not fit a message."""
MAX_PREVIEW_CHARS: Final = 4096
MAX_MESSAGE_CHARS: Final = 2048


def dead_letter_record(
    *,
    raw: bytes,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    message: str,
    ts_ms: int,
) -> dict[str, Any]:
    """The dead-letter message for `raw`; `reason` must be one of `REASONS` (a closed label set)."""
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}; expected one of {REASONS}")
    kept = raw[:MAX_ORIGINAL_BYTES]
    return {
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


def _text_preview(raw: bytes) -> str | None:
    """The first characters of `raw` as text, or None when it is not valid UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[:MAX_PREVIEW_CHARS]
