"""`personify credits`: the reference subscriber of `attribution-credits-v2` (`credit/2`).

A credit changes only by a correction: a `retract` that repeats the current revision with its
amounts negated, then the `assert` of the next revision. The subscriber folds every record into a
`Ledger` (de-duplicated by `(credit_id, revision, op)`, so records redelivered after a crash
count once), which holds both readings the contract offers (schemas/README.md): the sum of every
record, and the newest assert per `credit_id`. The totals shown are the current credits'; the
sum is the check. The two agree once every correction has fully arrived, so a difference at the
end of the topic means a record lost, doubled or out of contract. Teams that subscribe to
attribution start from here.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass, field

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from readmodels.ledger import Ledger
from streams.broker import BrokerUnreachable, client_config, partitions_of
from streams.topology import Settings


@dataclass(slots=True)
class CurrentTotals:
    """Reporting minor units of the current credits (the newest assert of each `credit_id`)."""

    by_model: dict[str, int] = field(default_factory=dict)
    by_model_channel: dict[tuple[str, str], int] = field(default_factory=dict)

    def channels(self) -> list[str]:
        """Channels by first-touch credit, largest first."""
        names = {channel for _, channel in self.by_model_channel}
        return sorted(names, key=lambda c: (-self.by_model_channel.get(("first_touch", c), 0), c))


def current_totals(ledger: Ledger) -> CurrentTotals:
    """Totals by model and by (model, channel) over the ledger's newest asserts only."""
    totals = CurrentTotals()
    for record in ledger.current.values():
        model = record["model"]
        totals.by_model[model] = totals.by_model.get(model, 0) + record["reporting_amount_minor"]
        for line in record["lines"]:
            cell = (model, line["channel"])
            totals.by_model_channel[cell] = (totals.by_model_channel.get(cell, 0)
                                             + line["reporting_amount_minor"])
    return totals


def differences(ledger: Ledger,
                totals: CurrentTotals | None = None) -> dict[tuple[str, str | None], int]:
    """The sum of every record minus the current credits wherever they differ, keyed
    `(model, None)` for a model's total and `(model, channel)` for a channel's: empty once every
    correction has fully arrived (between a retract and its assert they differ by the
    retracted credit)."""
    totals = totals or current_totals(ledger)
    gaps: dict[tuple[str, str | None], int] = {}
    for model in ledger.by_model.keys() | totals.by_model.keys():
        gap = ledger.by_model.get(model, 0) - totals.by_model.get(model, 0)
        if gap:
            gaps[model, None] = gap
    for cell in ledger.by_model_channel.keys() | totals.by_model_channel.keys():
        gap = ledger.by_model_channel.get(cell, 0) - totals.by_model_channel.get(cell, 0)
        if gap:
            gaps[cell] = gap
    return gaps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", action="store_true",
                        help="keep reading and reprint the totals every --every seconds")
    parser.add_argument("--every", type=float, default=5.0, metavar="SECONDS",
                        help="with --follow: seconds between two printouts (default 5)")
    parser.add_argument("--group", help="consumer group (default: a fresh one, from the start)")


def read_credits(settings: Settings, ledger: Ledger | None = None, *, follow: bool = False,
                 every_s: float = 5.0, group: str | None = None) -> Ledger:
    """Fold the credits topic into a ledger; without `follow`, stop at the end of the topic."""
    ledger = ledger or Ledger()
    consumer = Consumer({**client_config(settings.kafka_bootstrap),
                         "group.id": group or f"personify-credits-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": bool(group)})
    topic = settings.topics.credits
    try:
        partitions = partitions_of(consumer, topic, settings.kafka_bootstrap)
    except BrokerUnreachable:
        consumer.close()
        raise
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}
    if group:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    positions = dict.fromkeys(partitions, 0)
    last_print = time.monotonic()
    try:
        while True:
            message = consumer.poll(0.2)
            now = time.monotonic()
            if message is not None and not message.error():
                ledger.add(orjson.loads(message.value()))
                positions[message.partition()] = message.offset() + 1
            if follow and now - last_print >= every_s:
                print(render(ledger), flush=True)
                last_print = now
            if not follow and all(positions[p] >= ends[p] for p in partitions):
                return ledger
    finally:
        consumer.close()


def render(ledger: Ledger) -> str:
    """Current credits in major units of the reporting currency, models across and channels
    down; then whether the sum of every record agrees."""
    totals = current_totals(ledger)
    models = sorted(totals.by_model)
    if not models:
        return "no credits yet"
    width = max(12, *(len(m) for m in models))
    lines = [f"{len(ledger.current):,} current credits from {ledger.records:,} records "
             f"({ledger.corrections:,} corrected, {ledger.duplicates:,} duplicates ignored), "
             f"{ledger.reporting_currency}",
             f"{'channel':<26}" + "".join(f"{m:>{width + 2}}" for m in models)]
    for channel in totals.channels():
        cells = "".join(f"{totals.by_model_channel.get((m, channel), 0) / 100:>{width + 2},.2f}"
                        for m in models)
        lines.append(f"{channel:<26}{cells}")
    lines.append(f"{'total':<26}" + "".join(f"{totals.by_model[m] / 100:>{width + 2},.2f}"
                                            for m in models))
    lines.append(_agreement(differences(ledger, totals)))
    return "\n".join(lines)


def _agreement(gaps: dict[tuple[str, str | None], int]) -> str:
    if not gaps:
        return "the sum of every record agrees with the current credits"
    shown = sorted(gaps.items(), key=lambda item: (item[0][0], item[0][1] or ""))[:5]
    detail = ", ".join(f"{model} {channel or 'total'} {gap / 100:+,.2f}"
                       for (model, channel), gap in shown)
    more = f" and {len(gaps) - len(shown)} more" if len(gaps) > len(shown) else ""
    return (f"the sum of every record differs from the current credits: {detail}{more} "
            "(a correction still arriving, reading begun mid-topic, or a record lost or doubled)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        ledger = read_credits(settings, follow=args.follow, every_s=args.every, group=args.group)
    except KeyboardInterrupt:
        return 0
    print(render(ledger))
    if differences(ledger):
        print("warning: the sum of every credit record differs from the current credits",
              file=sys.stderr)
    return 0
