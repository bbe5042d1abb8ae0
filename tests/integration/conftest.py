"""The real tier: the local stack's live broker and Redis; unique topics and groups per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from personify.stack.processes import stop_process
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_settings(base: Settings, tmp_path: Path, partitions: int = 4) -> Settings:
    """Fresh topics, consumer group and state directory, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"{getattr(Topics(), name)}-{suffix}"
                       for name in Topics.__dataclass_fields__})
    return replace(base, app_id=f"personify-test-{suffix}", topics=topics,
                   partitions=partitions, data_dir=tmp_path / "state", web_port=_free_port(),
                   store="memory://")


@pytest.fixture
def settings(base_settings: Settings, tmp_path: Path) -> Settings:
    isolated = isolated_settings(base_settings, tmp_path)
    ensure_topics(isolated)
    return isolated


class Worker:
    """`personify worker` in a child process, as an operator would run it."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log_path = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90) -> Worker:
        env = {**os.environ, **self.settings.to_env()}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the worker
        self.process = subprocess.Popen(
            [sys.executable, "-m", "personify.cli", "worker", "--loglevel", "warning"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.get("/ready")[0] == 200:
                return self
            time.sleep(0.3)
        pytest.fail(f"worker not ready within {timeout_s} s:\n{self.log_tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://{self.settings.web_host}:{self.settings.web_port}{path}"
        token = self.settings.api_token
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        assert status == 200
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    workers: list[Worker] = []

    def start(settings: Settings, name: str = "worker") -> Worker:
        worker = Worker(settings, tmp_path / f"{name}-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


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
