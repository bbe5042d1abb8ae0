"""The input stage's own consumer group: an upgrade starts where the worker's group left the
inputs, and what the stage forwards is what it commits."""

import time

import orjson
from confluent_kafka import Consumer, TopicPartition

from tests.integration.conftest import produce
from tests.integration.test_pipeline_through_the_broker import _page_view

VIEWS = 40
READ_BEFORE = 25
"""Page views of each partition the worker's own group had committed before the upgrade."""


def _views(settings):
    now = int(time.time() * 1000)
    return [(settings.topics.page_views, f"d{i}".encode(),
             orjson.dumps(_page_view(f"v{i}", f"d{i}", now - i, "https://www.example.com/")))
            for i in range(VIEWS)]


def _committed(settings, group: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    topic = settings.topics.page_views
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    consumer.close()
    return {tp.partition: tp.offset for tp in committed}


def _ends(settings) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "ends"})
    topic = settings.topics.page_views
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}
    consumer.close()
    return ends


def test_an_upgrade_reads_the_inputs_from_where_the_worker_group_left_them(
        settings, start_worker):
    produce(settings, _views(settings))
    ends = _ends(settings)
    earlier = {p: min(READ_BEFORE // len(ends), end) for p, end in ends.items()}
    group = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.app_id,
                      "enable.auto.commit": False})
    group.commit(offsets=[TopicPartition(settings.topics.page_views, p, o)
                          for p, o in earlier.items()], asynchronous=False)
    group.close()

    worker = start_worker(settings)
    deadline = time.monotonic() + 60
    while _committed(settings, settings.intake_group) != ends and time.monotonic() < deadline:
        time.sleep(0.5)

    assert _committed(settings, settings.intake_group) == ends
    read = worker.metric("personify_events_consumed_total", topic=settings.topics.page_views)
    assert read == VIEWS - sum(earlier.values())
