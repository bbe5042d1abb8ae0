"""Fill Redis's serving views from Kafka, the state of record.

Reads the compacted profiles topic (the latest profile per person) and the credits topic and
writes the same idempotent keys the worker writes, so it is safe while a worker runs. The
worker runs it by itself when it finds Redis emptied (streams/views.py); `personify views
rebuild` runs it by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from tqdm import tqdm

from readmodels.serving_views import credit_writes, profile_writes, queue_write
from streams.topology import Settings

PIPELINE_WRITES = 2000


def _read_topic(settings: Settings, topic: str, label: str,
                progress: bool) -> Iterator[dict[str, Any]]:
    """Every record of `topic` up to its end offsets at the start."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"personify-views-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = {p for p, end in ends.items() if end > 0}
        with tqdm(total=sum(ends.values()), desc=label, unit=" records",
                  disable=not progress) as bar:
            while remaining:
                message = consumer.poll(1.0)
                if message is None or message.error():
                    continue
                bar.update(1)
                if message.offset() + 1 >= ends[message.partition()]:
                    remaining.discard(message.partition())
                if message.value() is not None:
                    yield orjson.loads(message.value())
    finally:
        consumer.close()


def rebuild(settings: Settings, *, progress: bool = True) -> int:
    """Write every profile and current credit of the topics to Redis; the writes applied."""
    client = redis.Redis.from_url(settings.redis_url)
    written = 0
    for topic, to_writes, label in (
            (settings.topics.profiles, profile_writes, "profiles"),
            (settings.topics.credits, credit_writes, "credits")):
        pipe = client.pipeline(transaction=False)
        for record in _read_topic(settings, topic, label, progress):
            if record.get("op") == "retract":  # its assert follows; the views keep asserts
                continue
            for write in to_writes(record):
                queue_write(pipe, write)
                written += 1
            if len(pipe) >= PIPELINE_WRITES:
                pipe.execute()
        pipe.execute()
    return written
