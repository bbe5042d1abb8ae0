"""The simulated workload: a backlog file, what it must produce, and a live stream to replay.

Both come from `personify simulate` with fixed seeds, so two runs send the same bytes. The
live stream uses another seed than the backlog: its people, devices and event ids are new to
the worker that already holds the backlog's state.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from personify.send import cli_client, resolve_topic, send_file
from processors.attribution import MODELS
from streams.topology import Settings

LIVE_SEED_OFFSET = 1_000
"""The live stream's seed is the backlog's plus this: a different, still fixed population."""


def simulate(out: Path, *, people: int, seed: int) -> Path:
    """Write the events of `people` simulated people (defaults otherwise) to `out`."""
    subprocess.run(
        [sys.executable, "-m", "personify.cli", "simulate", "--people", str(people),
         "--seed", str(seed), "--out", str(out), "--no-progress"],
        check=True, capture_output=True, timeout=1800)
    return out


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as source:
        for text in source:
            if text.strip():
                yield orjson.loads(text)


def revenue_event_id(line: dict[str, Any]) -> str | None:
    """The event id of a well-formed payment or refund (each yields one credit per model);
    defective copies and other events yield none."""
    value = line.get("value")
    if line.get("defect") is None and value and value.get("kind") in ("payment", "refund"):
        return value["event_id"]
    return None


@dataclass(frozen=True, slots=True)
class Backlog:
    path: Path
    events: int
    revenue_events: int
    bytes: int
    """Sum of the message values as sent (what the ceilings move too)."""

    @property
    def expected_credits(self) -> int:
        return self.revenue_events * len(MODELS)

    @classmethod
    def of(cls, path: Path) -> Backlog:
        events = revenue = size = 0
        for line in read_lines(path):
            events += 1
            revenue += revenue_event_id(line) is not None
            size += len(wire_value(line))
        return cls(path, events, revenue, size)

    def write_values(self, out: Path, limit: int) -> Path:
        """The first `limit` message values, one a line, for ProducerPerformance's
        `--payload-file` (it draws from them at random and holds them all in memory); compact
        JSON holds no newline, so the tool splits it back into the same messages."""
        with out.open("wb") as sink:
            for _, line in zip(range(limit), read_lines(self.path), strict=False):
                sink.write(wire_value(line) + b"\n")
        return out


def wire_value(line: dict[str, Any]) -> bytes:
    """The bytes a line puts on the wire (`personify send` sends `value` as compact JSON)."""
    return line["raw"].encode() if "raw" in line else orjson.dumps(line["value"])


def produce_backlog(backlog: Backlog, settings: Settings) -> float:
    """Send the backlog to the sandbox's input topics and wait for delivery; returns seconds."""
    with cli_client(settings) as client:
        summary = send_file(client, backlog.path, progress=False)
    if not summary.ok:
        raise RuntimeError(f"backlog not fully delivered: {summary.describe()}")
    return summary.seconds


@dataclass(frozen=True, slots=True)
class LiveEvent:
    topic: str
    key: bytes | None
    value: dict[str, Any] | None
    """A contract payload, or None for raw bytes (sent as they are)."""
    raw: bytes | None
    revenue_event_id: str | None

    def encode(self, ts_ms: int | None = None) -> bytes:
        """The bytes to send; `ts_ms` re-times a payload (its `ts` becomes that instant)."""
        if self.value is None:
            return self.raw
        return orjson.dumps(self.value if ts_ms is None else {**self.value, "ts": ts_ms})


def live_stream(path: Path, settings: Settings) -> list[LiveEvent]:
    """Every line of a simulated file as a live event for the sandbox's topics, in order."""
    events = []
    for line in read_lines(path):
        topic = resolve_topic(line["topic"], settings.topics)
        value = line.get("value")
        if value is None:
            key = line.get("key")
            events.append(LiveEvent(topic, key.encode() if key is not None else None, None,
                                    line["raw"].encode(), None))
        else:
            key = value["user_id"] if topic == settings.topics.billing else value["anonymous_id"]
            events.append(LiveEvent(topic, key.encode(), value, None, revenue_event_id(line)))
    return events
