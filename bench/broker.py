"""What the broker holds: records written per topic and the bytes of their keys and values."""

from __future__ import annotations

import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient


def _reader(bootstrap: str) -> Consumer:
    """A consumer that joins no group and commits nothing: it only assigns and reads."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "personify-bench-reader",
                     "enable.auto.commit": False, "enable.partition.eof": False})


def _partition_ends(consumer: Consumer, topics: list[str]) -> dict[TopicPartition, int]:
    ends = {}
    for topic in topics:
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            tp = TopicPartition(topic, partition)
            ends[tp] = consumer.get_watermark_offsets(tp, timeout=10)[1]
    return ends


def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Per topic, the sum of its partitions' high watermarks: the records ever written to a
    fresh topic (nothing is deleted within a run)."""
    consumer = _reader(bootstrap)
    try:
        totals = dict.fromkeys(topics, 0)
        for tp, end in _partition_ends(consumer, topics).items():
            totals[tp.topic] += end
        return totals
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """Per topic, records not yet committed by `group` (a partition it never committed counts
    whole). Faust commits every few seconds, so a lag of 0 means the worker has caught up."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group)
    committed = {(tp.topic, tp.partition): max(tp.offset, 0)
                 for tp in admin.list_consumer_group_offsets([request])[group].result()
                 .topic_partitions}
    consumer = _reader(bootstrap)
    try:
        lag = dict.fromkeys(topics, 0)
        for tp, end in _partition_ends(consumer, topics).items():
            lag[tp.topic] += end - committed.get((tp.topic, tp.partition), 0)
        return lag
    finally:
        consumer.close()


def payload_bytes(bootstrap: str, topics: list[str], timeout_s: float = 300.0) -> dict[str, int]:
    """Per topic, the bytes of every record's key and value, read from the start to the end
    offsets of now (the logical size written, before batching and compression)."""
    consumer = _reader(bootstrap)
    try:
        ends = {tp: end for tp, end in _partition_ends(consumer, topics).items() if end > 0}
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in ends])
        remaining = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        sizes = dict.fromkeys(topics, 0)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not read within {timeout_s} s: {remaining}")
            # consume() waits for a full batch or its timeout, so the timeout stays short
            for message in consumer.consume(num_messages=5000, timeout=0.2):
                if message.error():
                    continue
                place = (message.topic(), message.partition())
                sizes[place[0]] += len(message.key() or b"") + len(message.value() or b"")
                if place in remaining and message.offset() + 1 >= remaining[place]:
                    del remaining[place]
        return sizes
    finally:
        consumer.close()


def produce_patiently(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    """Produce one record; when librdkafka's local queue is full, serve deliveries and retry."""
    while True:
        try:
            producer.produce(topic, value, key)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
