"""The real tier: the local stack's live broker and Redis; unique topics and groups per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from personify.stack.processes import StackError, free_port
from personify.stack.worker_process import WorkerProcess
from streams.topology import Settings, Topics, ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    settings = Settings.from_env()
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=10)
    except Exception as exc:  # a missing broker is a failure, never a skip
        pytest.fail(f"no Kafka broker at {settings.kafka_bootstrap} ({exc}); run `make test`, "
                    "which starts the local stack")
    return settings


def isolated_settings(base: Settings, tmp_path: Path, partitions: int = 4) -> Settings:
    """Fresh topics, consumer group and state directory, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"{getattr(Topics(), name)}-{suffix}"
                       for name in Topics.__dataclass_fields__})
    return replace(base, app_id=f"personify-test-{suffix}", topics=topics,
                   partitions=partitions, data_dir=tmp_path / "state", web_port=free_port(),
                   store="memory://")


@pytest.fixture
def settings(base_settings: Settings, tmp_path: Path) -> Settings:
    isolated = isolated_settings(base_settings, tmp_path)
    ensure_topics(isolated)
    return isolated


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    """`personify worker` in a child process, as an operator would run it; stopped at the end."""
    workers: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "worker") -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name}-{len(workers)}.log")
        workers.append(worker)
        try:
            worker.start(timeout_s=90)
        except StackError as exc:
            pytest.fail(str(exc), pytrace=False)
        return worker

    yield start
    for worker in workers:
        worker.stop(timeout_s=30)


def producer(settings: Settings) -> Producer:
    """Keys partitioned the way Faust does (Java-compatible murmur2)."""
    return Producer({"bootstrap.servers": settings.kafka_bootstrap,
                     "partitioner": "murmur2_random", "enable.idempotence": True,
                     "linger.ms": 5})


def produce(settings: Settings, records: list[tuple[str, bytes | None, bytes]]) -> None:
    p = producer(settings)
    for topic, key, value in records:
        p.produce(topic, key=key, value=value)
        p.poll(0)
    assert p.flush(30) == 0


def consume(settings: Settings, topic: str, *, expected: int, timeout_s: float = 60,
            settle_s: float = 2.0) -> list:
    """Read `topic` from the start until `expected` messages arrived and nothing more came for
    `settle_s` (so extra, duplicated messages are seen too), or fail at `timeout_s`."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout_s
    last_arrival = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(messages) >= expected and time.monotonic() - last_arrival >= settle_s:
                    break
                continue
            if msg.error():
                continue
            messages.append(msg)
            last_arrival = time.monotonic()
    finally:
        consumer.close()
    assert len(messages) >= expected, (
        f"{topic}: {len(messages)} of {expected} messages within {timeout_s} s")
    return messages


def values(messages: list) -> list[dict]:
    return [orjson.loads(m.value()) for m in messages]
