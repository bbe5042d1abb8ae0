"""`personify credits`: the reference subscriber of `attribution-credits-v1`.

Reads the credits topic with its own consumer group, de-duplicates by `credit_id`, and prints
running totals by model and channel. Teams that subscribe to attribution start from here.
"""

from __future__ import annotations

import argparse
import time
import uuid

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from personify.settings import Settings
from processors.ledger import Ledger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", action="store_true",
                        help="keep reading and reprint the totals every --every seconds")
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--group", help="consumer group (default: a fresh one, from the start)")


def read_credits(settings: Settings, ledger: Ledger | None = None, *, follow: bool = False,
                 every_s: float = 5.0, group: str | None = None) -> Ledger:
    """Fold the credits topic into a ledger; without `follow`, stop at the end of the topic."""
    ledger = ledger or Ledger()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": group or f"personify-credits-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": bool(group)})
    topic = settings.topics.credits
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
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
    """Totals in major units of the reporting currency: models across, channels down."""
    models = sorted(ledger.by_model)
    if not models:
        return "no credits yet"
    width = max(12, *(len(m) for m in models))
    lines = [f"{ledger.records:,} credit records ({ledger.duplicates:,} duplicates ignored), "
             f"{ledger.reporting_currency}",
             f"{'channel':<26}" + "".join(f"{m:>{width + 2}}" for m in models)]
    for channel in ledger.channels():
        cells = "".join(f"{ledger.by_model_channel.get((m, channel), 0) / 100:>{width + 2},.2f}"
                        for m in models)
        lines.append(f"{channel:<26}{cells}")
    lines.append(f"{'total':<26}" + "".join(f"{ledger.by_model[m] / 100:>{width + 2},.2f}"
                                            for m in models))
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        ledger = read_credits(settings, follow=args.follow, every_s=args.every, group=args.group)
    except KeyboardInterrupt:
        return 0
    print(render(ledger))
    return 0
