"""Invariants 4 and 5 through the broker: one log, any configuration and arrival order, the
credits of the batch computation, record by record.

The simulated log runs at 1 and 4 partitions, with 1 and 2 workers, produced flat out, paced,
and with all billing produced before every page view and signup (a history import). Each run
is read until its resolved credits equal the batch computation's (`processors.reference`) or
a generous deadline passes: the expected answer is known, so no run waits on a guess of when
the pipeline is done. Every retract must cancel an earlier assert exactly, and summing every
record must give the current credits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import orjson
import pytest
from confluent_kafka import Consumer

from processors.config import PipelineConfig
from processors.reference import current_credits, latest_profiles, run_in_event_time
from processors.revenue import credit_record
from processors.validation import Rejection, decode
from streams.topology import ensure_topics
from tests.integration.conftest import isolated_settings

PEOPLE, SEED = 900, 11
KINDS = {"page_view/1": "page_view", "signup/1": "signup", "billing/1": "billing"}


def _simulate(tmp_path, *extra):
    events = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, "-m", "personify.cli", "simulate", "--people", str(PEOPLE),
                    "--seed", str(SEED), "--malformed-share", "0", "--shared-device-share",
                    "0.1", "--no-progress", *extra, "--out", str(events)],
                   check=True, timeout=300, capture_output=True)
    return events


def _cli(settings, *args):
    env = {**os.environ, **settings.to_env()}
    result = subprocess.run([sys.executable, "-m", "personify.cli", *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def reference(lines: list[bytes]) -> tuple[dict, dict]:
    """The batch computation's resolved credits and latest profiles."""
    config, now = PipelineConfig(), time.time_ns() // 1_000_000
    events = []
    for line in lines:
        value = orjson.loads(line)["value"]
        event = decode(orjson.dumps(value), KINDS[value["schema"]], now_ms=now,
                       config=config.validation)
        assert not isinstance(event, Rejection), event
        events.append(event)
    pipeline = run_in_event_time(events, config, now)
    return (_comparable(current_credits(credit_record(c) for c in pipeline.credits())),
            pipeline.profiles())


def _comparable(credits: dict) -> dict:
    """Resolved credits without what only tells how they were reached."""
    return {credit_id: {k: v for k, v in record.items() if k not in ("op", "revision", "cause")}
            for credit_id, record in credits.items()}


def _reader(settings, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"event-time-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    return consumer


def read_profiles_until(settings, expected: dict, timeout_s: float = 120) -> dict:
    """The latest profile per person, read until they equal `expected` or the deadline."""
    consumer, records = _reader(settings, settings.topics.profiles), []
    deadline = time.monotonic() + timeout_s
    while latest_profiles(records) != expected and time.monotonic() < deadline:
        records.extend(orjson.loads(message.value())
                       for message in consumer.consume(5000, timeout=1.0)
                       if not message.error())
    consumer.close()
    return latest_profiles(records)


class CreditReader:
    """Every record of the credits topic, read as it comes."""

    def __init__(self, settings) -> None:
        self.consumer = _reader(settings, settings.topics.credits)
        self.records: list[dict] = []

    def read_until(self, expected: dict, timeout_s: float = 240) -> dict:
        """Read until the resolved credits equal `expected` or the deadline passes; the last
        resolved credits either way."""
        deadline = time.monotonic() + timeout_s
        resolved: dict = {}
        while time.monotonic() < deadline:
            batch = self.consumer.consume(5000, timeout=1.0)
            self.records.extend(orjson.loads(m.value()) for m in batch if not m.error())
            if batch or not resolved:
                resolved = _comparable(current_credits(self.records))
            if resolved == expected:
                break
        self.consumer.close()
        return resolved

    def sums(self) -> dict:
        """Per credit id and line touch, the sum of every record (each distinct record once)."""
        totals: dict = {}
        seen = set()
        for record in self.records:
            key = (record["credit_id"], record["revision"], record["op"])
            if key in seen:
                continue
            seen.add(key)
            for line in record["lines"]:
                cell = (record["credit_id"], line["touch_event_id"])
                totals[cell] = totals.get(cell, 0) + line["reporting_amount_minor"]
        return {cell: total for cell, total in totals.items() if total}


def line_sums(resolved: dict) -> dict:
    totals: dict = {}
    for credit_id, record in resolved.items():
        for line in record["lines"]:
            cell = (credit_id, line["touch_event_id"])
            totals[cell] = totals.get(cell, 0) + line["reporting_amount_minor"]
    return {cell: total for cell, total in totals.items() if total}


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    events = _simulate(tmp_path_factory.mktemp("log"))
    lines = events.read_bytes().splitlines()
    return events, lines, *reference(lines)


def _run(base_settings, start_worker, tmp_path, partitions, workers, send):
    settings = isolated_settings(base_settings, tmp_path / f"p{partitions}w{workers}", partitions)
    ensure_topics(settings)
    for index in range(workers):
        start_worker(replace(settings, web_port=settings.web_port + index,
                             data_dir=settings.data_dir / str(index)), name=f"w{index}")
    reader = CreditReader(settings)
    send(settings)
    return reader, settings


SCENARIOS = {
    "1_partition_1_worker_flat_out": (1, 1, "flat"),
    "4_partitions_2_workers_flat_out": (4, 2, "flat"),
    "4_partitions_1_worker_paced": (4, 1, "paced"),
    "4_partitions_1_worker_billing_before_touches": (4, 1, "billing_first"),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_log_gives_the_batch_computations_credits_in_every_configuration(
        scenario, log, base_settings, start_worker, tmp_path):
    partitions, workers, order = SCENARIOS[scenario]
    events, lines, expected, profiles = log
    assert len(expected) > 200 and len(profiles) > 50

    def send(settings):
        if order == "flat":
            _cli(settings, "send", "--no-progress", str(events))
        elif order == "billing_first":
            billing = [line for line in lines if b'"billing-v1"' in line.split(b",", 1)[0]]
            rest = [line for line in lines if line not in set(billing)]
            reordered = tmp_path / "billing-first.jsonl"
            reordered.write_bytes(b"\n".join(billing + rest) + b"\n")
            _cli(settings, "send", "--no-progress", str(reordered))
        else:
            _cli(settings, "simulate", "--people", str(PEOPLE), "--seed", str(SEED),
                 "--malformed-share", "0", "--shared-device-share", "0.1", "--no-progress",
                 "--rate", "1500")

    reader, settings = _run(base_settings, start_worker, tmp_path, partitions, workers, send)
    resolved = reader.read_until(expected)
    missing = sorted(set(expected) - set(resolved))[:3]
    differing = [k for k in expected if k in resolved and resolved[k] != expected[k]][:3]
    assert resolved == expected, (f"{len(set(expected) ^ set(resolved))} credit ids differ "
                                  f"(e.g. missing {missing}), {len(differing)}+ records differ "
                                  f"(e.g. {differing})")
    assert reader.sums() == line_sums(resolved)
    assert read_profiles_until(settings, profiles) == profiles
