"""`personify views rebuild`: fill Redis's serving views from Kafka, the state of record.

Reads the compacted profiles topic (the latest profile per person) and the credits topic and
writes the same idempotent keys the worker writes, so it is safe while a worker runs.
"""

from __future__ import annotations

import argparse
import uuid

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from tqdm import tqdm

from personify.settings import Settings
from processors.views import credit_writes, profile_writes, queue_write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("rebuild",))


def _read_topic(settings: Settings, topic: str, progress: str):
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"personify-views-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    remaining = {p for p, end in ends.items() if end > 0}
    with tqdm(total=sum(ends.values()), desc=progress, unit=" records") as bar:
        while remaining:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            bar.update(1)
            if message.offset() + 1 >= ends[message.partition()]:
                remaining.discard(message.partition())
            if message.value() is not None:
                yield orjson.loads(message.value())
    consumer.close()


def rebuild(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    written = 0
    for topic, to_writes, label in (
            (settings.topics.profiles, profile_writes, "profiles"),
            (settings.topics.credits, credit_writes, "credits")):
        pipe = client.pipeline(transaction=False)
        for record in _read_topic(settings, topic, label):
            for write in to_writes(record):
                queue_write(pipe, write)
                written += 1
            if len(pipe) >= 2000:
                pipe.execute()
        pipe.execute()
    return written


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        written = rebuild(settings)
    except redis.RedisError as exc:
        print(f"personify: Redis at {settings.redis_url} is not reachable ({exc}); start it "
              "with `personify stack up` or set PERSONIFY_REDIS_URL")
        return 2
    print(f"{written:,} view writes applied to {settings.redis_url}")
    return 0
