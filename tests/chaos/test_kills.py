"""SIGKILLs of the worker at random moments during a replay and during a live stream of a log
with defective events: afterwards the resolved credits, the latest profiles and the dead
letters equal the batch computation of the same log, record by record, and the worker is
healthy. `make chaos` kills 20 times (PERSONIFY_CHAOS_KILLS, 3 when run by hand). Every process
is started and stopped by pid, on loopback.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace

import orjson
from confluent_kafka import Consumer, TopicPartition

from personify.sdk import key_of, kind_of_payload
from personify.send import resolve_topic
from processors.config import PipelineConfig
from processors.reference import current_credits, run_in_event_time
from processors.revenue import credit_record
from processors.validation import Rejection, decode
from tests.integration.conftest import producer
from tests.integration.test_event_time_through_the_broker import (
    CreditReader,
    _comparable,
    read_profiles_until,
)

KILLS = int(os.environ.get("PERSONIFY_CHAOS_KILLS", "3"))
SEED = int(os.environ.get("PERSONIFY_CHAOS_SEED", str(random.SystemRandom().randrange(1, 10_000))))
KINDS = {"page_view/1": "page_view", "signup/1": "signup", "billing/1": "billing"}


def _simulate(tmp_path, name: str, people: int, seed: int) -> list[dict]:
    path = tmp_path / f"{name}.jsonl"
    subprocess.run([sys.executable, "-m", "personify.cli", "simulate", "--people", str(people),
                    "--seed", str(seed), "--malformed-share", "0.02", "--shared-device-share",
                    "0.1", "--no-progress", "--out", str(path)],
                   check=True, timeout=300, capture_output=True)
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class Expected:
    """What a fault-free run of `lines` ends with: the batch computation's resolved credits and
    latest profiles, and one dead letter per defective line (duplicates are dropped)."""

    def __init__(self, lines: list[dict]) -> None:
        config, now = PipelineConfig(), time.time_ns() // 1_000_000
        self.now_ms = now
        events = []
        for line in lines:
            if "value" in line:
                event = decode(orjson.dumps(line["value"]), KINDS[line["value"]["schema"]],
                               now_ms=now, config=config.validation)
                assert not isinstance(event, Rejection), event
                events.append(event)
        pipeline = run_in_event_time(events, config, now)
        self.credits = _comparable(current_credits(credit_record(c) for c in pipeline.credits()))
        self.profiles = pipeline.profiles()
        self.dead_letters = sum(1 for line in lines
                                if line.get("defect") not in (None, "duplicate"))


def _records(settings, lines):
    for line in lines:
        topic = resolve_topic(line["topic"], settings.topics)
        if "raw" in line:
            key = line.get("key")
            yield topic, key.encode() if key is not None else None, line["raw"].encode()
        else:
            value = line["value"]
            yield topic, key_of(kind_of_payload(value), value).encode(), orjson.dumps(value)


def send(settings, lines, rate: float | None = None) -> threading.Thread:
    """Produce `lines` in a thread, at once or `rate` per second (a live stream)."""

    def run() -> None:
        client, started = producer(settings), time.monotonic()
        for index, (topic, key, value) in enumerate(_records(settings, lines)):
            if rate:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            while True:
                try:
                    client.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    client.poll(0.1)
            client.poll(0)
        assert client.flush(120) == 0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def dead_letters(settings) -> list[dict]:
    """Every record of the dead-letter topic."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "chaos",
                         "enable.auto.commit": False})
    topic, records = settings.topics.dead_letters, []
    for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
        end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        consumer.assign([TopicPartition(topic, partition, 0)])
        while end and (message := consumer.poll(5.0)) is not None:
            records.append(orjson.loads(message.value()))
            if message.offset() + 1 >= end:
                break
    consumer.close()
    return records


def _differences(got: dict, expected: dict) -> str:
    ids = sorted(k for k in got.keys() | expected.keys() if got.get(k) != expected.get(k))
    return f"seed {SEED}: {len(ids)} differ, e.g. " + "; ".join(
        f"{k}: got {got.get(k)} expected {expected.get(k)}" for k in ids[:2])


def assert_as_if_nothing_happened(settings, expected: Expected, reader: CreditReader) -> None:
    """The check after every fault; prints what a closing report needs."""
    credits = reader.read_until(expected.credits, timeout_s=300)
    assert credits == expected.credits, _differences(credits, expected.credits)
    profiles = read_profiles_until(settings, expected.profiles, timeout_s=60)
    assert profiles == expected.profiles, _differences(profiles, expected.profiles)
    records = dead_letters(settings)
    positions = {(r["topic"], r["partition"], r["offset"]): r for r in records}
    assert len(positions) == expected.dead_letters, (
        f"seed {SEED}: {len(positions)} dead letters, {expected.dead_letters} expected; by "
        f"reason {Counter(r['reason'] for r in positions.values())}; past validation "
        f"{[r for r in positions.values() if r['reason'].startswith(('refund', 'processing'))]}")
    assert not {"processing_error", "duplicate_event_id"} & {r["reason"] for r in records}
    retracts = sum(1 for r in reader.records if r.get("op") == "retract")
    print(f"\nseed {SEED}: {len(credits)} credits and {len(profiles)} profiles equal to the "
          f"batch computation ({len(reader.records)} credit records, {retracts} retracts); "
          f"{len(positions)} dead letters as expected, {len(records) - len(positions)} "
          f"repeated after a restart")


def kill_and_restart(worker, start_worker, rng: random.Random, kills: int, log: list):
    for _ in range(kills):
        time.sleep(rng.uniform(0.3, 2.5))
        worker.kill()
        killed = time.monotonic()
        worker = start_worker(worker.settings, name="restarted")
        log.append(time.monotonic() - killed)
    return worker


def test_sigkills_during_a_replay_and_a_live_stream_change_nothing(
        settings, start_worker, tmp_path):
    settings = replace(settings, store="rocksdb://")
    rng = random.Random(SEED)
    backlog = _simulate(tmp_path, "backlog", 1500, SEED)
    live = _simulate(tmp_path, "live", 1000, SEED + 1)
    expected = Expected(backlog + live)
    reader = CreditReader(settings)
    worker = start_worker(settings)
    recoveries: list[float] = []

    replay = send(settings, backlog)
    worker = kill_and_restart(worker, start_worker, rng, (KILLS + 1) // 2, recoveries)
    replay.join()
    stream = send(settings, live, rate=1500)
    worker = kill_and_restart(worker, start_worker, rng, KILLS // 2, recoveries)
    stream.join()

    assert_as_if_nothing_happened(settings, expected, reader)
    assert worker.get("/ready")[0] == 200
    print(f"\nchaos seed {SEED}: {len(recoveries)} kills, kill → ready "
          f"{max(recoveries):.1f} s at most")
