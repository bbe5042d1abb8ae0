"""`personify send FILE.jsonl`: produce a file of events to the input topics.

One JSON object a line, any of:
- a contract event itself, `{"schema": "billing/1", ...}`: its schema names its topic;
- `{"topic": ..., "value": {...}}`, a contract event and the topic it belongs on;
- `{"topic": ..., "key": ..., "raw": "..."}`, bytes sent as they are (deliberately malformed
  events).
Events are validated, then keyed as the pipeline expects. Other fields (such as `defect`) are
ignored. Topics may be given by their default names (`page-views-v1`) or the configured ones.
The exit code is 0 only when every line was produced and delivered; with no broker answering
it stops within seconds and says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from personify.sdk import (
    TOPIC_KINDS,
    UNSENT_AT_CLOSE,
    DeliveryReport,
    InvalidEvent,
    Personify,
    kind_of_payload,
)
from streams.topology import Settings, Topics

CLI_PRODUCER_CONFIG: Mapping[str, Any] = {"message.timeout.ms": 60_000}
"""Command-line tools give up on an unreachable broker after a minute, not librdkafka's five."""

_MAX_REPORTED_LINES = 5


def resolve_topic(name: str, topics: Topics) -> str:
    """The configured input topic a line names, by its configured or its default name."""
    defaults = Topics()
    for kind in TOPIC_KINDS:
        if name in (getattr(topics, kind), getattr(defaults, kind)):
            return getattr(topics, kind)
    raise InvalidEvent(f"unknown input topic {name!r} (expected one of {topics.all_inputs()})")


def produce_line(client: Personify, line: Mapping[str, Any]) -> None:
    """Produce one parsed line; raises `InvalidEvent` when it is not a valid line or event."""
    if isinstance(line, Mapping) and "schema" in line and "topic" not in line:
        client.send_event(line)
        return
    if not isinstance(line, Mapping) or not isinstance(line.get("topic"), str):
        raise InvalidEvent("a line is an event with a 'schema', or has a string 'topic'")
    topic = resolve_topic(line["topic"], client.topics)
    if "raw" in line:
        raw, key = line["raw"], line.get("key")
        if not isinstance(raw, str) or not (key is None or isinstance(key, str)):
            raise InvalidEvent("'raw' must be a string and 'key' a string or null")
        client.send_raw(topic, key, raw.encode())
        return
    value = line.get("value")
    if not isinstance(value, Mapping):
        raise InvalidEvent("a line needs a 'value' object or a 'raw' string")
    if getattr(client.topics, kind_of_payload(value)) != topic:
        raise InvalidEvent(f"a {value['schema']} event does not belong on {topic}")
    client.send_event(value)


@dataclass(slots=True)
class SendSummary:
    lines: int = 0
    rejected: int = 0
    delivered: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.failed == 0 and self.delivered == self.lines

    def describe(self) -> str:
        rate = self.delivered / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.delivered} of {self.lines} events delivered in {self.seconds:.1f} s "
                f"({rate:,.0f} events/s); {self.rejected} rejected lines, "
                f"{self.failed} delivery failures")


def send_file(client: Personify, path: Path, *, progress: bool = True) -> SendSummary:
    """Produce every line of `path` and wait for delivery; invalid lines are reported on
    stderr (the first few) and counted, never sent."""
    summary = SendSummary()
    started = time.monotonic()
    with path.open("rb") as source, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, disable=not progress,
        desc=f"send {path.name}",
    ) as bar:
        for number, text in enumerate(source, start=1):
            bar.update(len(text))
            if not text.strip():
                continue
            summary.lines += 1
            try:
                produce_line(client, orjson.loads(text))
            except (InvalidEvent, orjson.JSONDecodeError) as exc:
                summary.rejected += 1
                if summary.rejected <= _MAX_REPORTED_LINES:
                    tqdm.write(f"{path}:{number}: {exc}", file=sys.stderr)
        client.poll(0)
        while client.flush(1.0) > 0:
            bar.set_postfix(delivered=client.delivered)
    summary.delivered = client.delivered
    summary.failed = client.failed
    summary.seconds = time.monotonic() - started
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path,
                        help="JSON lines: events ({schema, ...}), {topic, value} or "
                             "{topic, key, raw}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def cli_client(settings: Settings) -> Personify:
    """A client for command-line tools: delivery failures are counted, the first few printed."""
    return Personify(settings.kafka_bootstrap, topics=settings.topics,
                     producer_config=CLI_PRODUCER_CONFIG, on_delivery=_print_first_failures())


def _print_first_failures() -> Callable[[DeliveryReport], None]:
    printed = 0

    def on_delivery(report: DeliveryReport) -> None:
        nonlocal printed
        if report.error not in (None, UNSENT_AT_CLOSE) and printed < _MAX_REPORTED_LINES:
            printed += 1
            tqdm.write(f"delivery failed: {report.topic} key={report.key!r}: {report.error}",
                       file=sys.stderr)

    return on_delivery


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.file.is_file():
        raise ValueError(f"{args.file}: no such file; write one with `personify simulate --out "
                         f"{args.file}`, one JSON event a line")
    with cli_client(settings) as client:
        summary = send_file(client, args.file, progress=not args.no_progress)
    print(summary.describe())
    return 0 if summary.ok else 1
