"""Keep the current attribution credits from `attribution-credits-v2`: a consumer's example.

    python examples/consume_credits.py --bootstrap 127.0.0.1:19092 --exit-when-idle 10 \
        --out current-credits.json

It needs only confluent-kafka (`pip install confluent-kafka`). The rules it follows are the
topic's contract (schemas/README.md, docs/consumers.md):

- A record's headers say what it is (`schema: credit/2`); anything else is skipped, unread.
- A credit (`credit_id`: one revenue event under one model) is restated by a `retract` of its
  revision (every amount negated) and an `assert` of the next revision.
- The current credit is the `assert` with the highest `revision` of its `credit_id`: compare
  revisions, never trust arrival order.
- A record may be delivered twice after a crash, identical: de-duplicate by
  `(credit_id, revision, op)` before adding amounts up.
- Totals add every distinct record, retracts included: a retract cancels its assert. Once
  every correction has arrived, the totals equal the sums of the current credits.

It keeps its state in memory and commits no offsets, so every start reads the topic from its
beginning (the topic is kept for as long as credits matter). A consumer that keeps the current
credits in a database stores each record's effect and the offsets in one transaction instead.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message

SCHEMA = b"credit/2"


class CurrentCredits:
    """The newest assert per credit id, and totals by (model, channel) in minor units of the
    reporting currency, from every distinct record."""

    def __init__(self) -> None:
        self.current: dict[str, dict] = {}
        self.totals: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._seen: set[tuple[str, int, str]] = set()
        self.reporting_currency = ""

    def apply(self, record: dict) -> None:
        identity = (record["credit_id"], record["revision"], record["op"])
        if identity in self._seen:  # a second delivery of the very same record
            return
        self._seen.add(identity)
        self.reporting_currency = record["reporting_currency"]
        for line in record["lines"]:  # a retract's amounts are negative: it cancels its assert
            self.totals[record["model"], line["channel"]] += line["reporting_amount_minor"]
        if record["op"] != "assert":
            return
        newest = self.current.get(record["credit_id"])
        if newest is None or newest["revision"] < record["revision"]:
            self.current[record["credit_id"]] = record


def is_credit(message: Message) -> bool:
    """Route by the headers; a record written before headers existed says it in its value."""
    headers = dict(message.headers() or ())
    if "schema" in headers:
        return headers["schema"] == SCHEMA
    return json.loads(message.value()).get("schema") == SCHEMA.decode()


def consume(args: argparse.Namespace) -> CurrentCredits:
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    credits = CurrentCredits()
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    last_record = time.monotonic()
    try:
        while not stopping:
            message = consumer.poll(0.5)
            if message is None:
                if args.exit_when_idle and time.monotonic() - last_record > args.exit_when_idle:
                    break
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    print(f"kafka: {message.error()}", file=sys.stderr)
                continue
            last_record = time.monotonic()
            if is_credit(message):
                credits.apply(json.loads(message.value()))
    finally:
        consumer.close()
    write(credits, args.out)
    return credits


def write(credits: CurrentCredits, out: Path | None) -> None:
    """The current credits and the totals as JSON (to `out`), the totals as a table."""
    totals = [{"model": model, "channel": channel, "reporting_amount_minor": amount}
              for (model, channel), amount in sorted(credits.totals.items())]
    if out is not None:
        out.write_text(json.dumps({"current_credits": credits.current, "totals": totals},
                                  indent=1, sort_keys=True))
    print(f"{len(credits.current)} current credits; totals in minor units of "
          f"{credits.reporting_currency or 'the reporting currency'}:")
    for total in totals:
        print(f"  {total['model']:<16} {total['channel']:<20} "
              f"{total['reporting_amount_minor']:>16,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topic", default="attribution-credits-v2")
    parser.add_argument("--group", default="credits-example")
    parser.add_argument("--exit-when-idle", type=float, default=0, metavar="SECONDS",
                        help="stop once no record came for this long (default: run until "
                             "Ctrl-C or SIGTERM)")
    parser.add_argument("--out", type=Path,
                        help="write the current credits and the totals here as JSON")
    consume(parser.parse_args())


if __name__ == "__main__":
    main()
