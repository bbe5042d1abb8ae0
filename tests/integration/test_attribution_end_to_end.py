import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import orjson

from personify.credits import read_credits
from personify.stack.topics import ensure_topics
from processors.attribution import MODELS
from processors.ledger import Ledger
from processors.money import default_currency_table, to_reporting
from tests.integration.conftest import isolated_settings


def _cli(settings, *args):
    env = {**os.environ, **settings.to_env()}
    result = subprocess.run([sys.executable, "-m", "personify.cli", *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _simulate(tmp_path, people, seed):
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.json"
    subprocess.run([sys.executable, "-m", "personify.cli", "simulate", "--people", str(people),
                    "--seed", str(seed), "--malformed-share", "0", "--out", str(events),
                    "--truth", str(truth), "--no-progress"], check=True, timeout=300,
                   capture_output=True)
    return events, json.loads(truth.read_text())


def _expected_revenue(events):
    """Per revenue event id, its reporting amount (refunds negative)."""
    table = default_currency_table()
    expected = {}
    for line in events.read_text().splitlines():
        value = orjson.loads(line).get("value") or {}
        if value.get("kind") in ("payment", "refund"):
            amount = to_reporting(value["amount_minor"], value["currency"], table, "USD")
            expected[value["event_id"]] = amount if value["kind"] == "payment" else -amount
    return expected


def _await_credits(settings, expected_records, timeout_s=180):
    deadline = time.monotonic() + timeout_s
    while True:
        ledger = read_credits(settings)
        if ledger.records >= expected_records or time.monotonic() > deadline:
            return ledger
        time.sleep(2)


def test_every_model_credits_exactly_payments_minus_refunds_and_first_touch_matches_truth(
        settings, start_worker, tmp_path):
    events, truth = _simulate(tmp_path, people=1500, seed=7)
    expected = _expected_revenue(events)
    start_worker(settings)
    _cli(settings, "send", str(events))

    ledger = _await_credits(settings, len(expected) * len(MODELS))

    assert ledger.records == len(expected) * len(MODELS)
    for model in MODELS:
        assert ledger.by_model[model] == sum(expected.values()), model
    channels = ledger.by_model_person_channel["first_touch"]
    unambiguous = [p for p in truth["people"] if p["acquisition_channel"] and not p["ambiguous"]
                   and p["user_id"] in channels]
    assert len(unambiguous) >= 20
    mismatched = [p["user_id"] for p in unambiguous
                  if channels[p["user_id"]] != p["acquisition_channel"]]
    assert mismatched == []


def test_a_worker_killed_mid_stream_loses_and_doubles_no_credit(settings, start_worker,
                                                                  tmp_path):
    events, _ = _simulate(tmp_path, people=3000, seed=3)
    expected = _expected_revenue(events)
    worker = start_worker(settings)
    _cli(settings, "send", str(events))
    time.sleep(1.5)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    start_worker(settings, name="restarted")

    ledger = _await_credits(settings, len(expected) * len(MODELS))

    assert ledger.records == len(expected) * len(MODELS)
    assert {model: ledger.by_model[model] for model in MODELS} == dict.fromkeys(
        MODELS, sum(expected.values()))
    dead = read_dead_letter_reasons(settings)
    assert "duplicate_event_id" not in dead


def read_dead_letter_reasons(settings):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "dl-reader",
                         "enable.auto.commit": False})
    topic = settings.topics.dead_letters
    reasons = set()
    for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
        tp = TopicPartition(topic, partition, 0)
        end = consumer.get_watermark_offsets(tp, timeout=10)[1]
        if end == 0:
            continue
        consumer.assign([tp])
        while True:
            message = consumer.poll(1.0)
            if message is None:
                break
            reasons.add(orjson.loads(message.value())["reason"])
            if message.offset() + 1 >= end:
                break
    consumer.close()
    return reasons


def test_credits_and_profiles_do_not_depend_on_partitions_or_workers(base_settings, start_worker,
                                                                     tmp_path):
    events, _ = _simulate(tmp_path, people=1200, seed=5)
    expected_records = len(_expected_revenue(events)) * len(MODELS)
    results = []
    for partitions, workers in ((1, 1), (4, 2)):
        settings = isolated_settings(base_settings, tmp_path / f"p{partitions}", partitions)
        ensure_topics(settings)
        started = [start_worker(replace(settings, web_port=settings.web_port + index,
                                        data_dir=settings.data_dir / str(index)),
                                name=f"w{index}")
                   for index in range(workers)]
        _cli(settings, "send", str(events))
        credits = _credit_records(settings, expected_records)
        _await_consumed(started, len(events.read_text().splitlines()))
        results.append((credits, _latest_profiles(settings)))
    (credits_1, profiles_1), (credits_4, profiles_4) = results
    assert credits_1 == credits_4
    assert len(profiles_1) > 50
    assert profiles_1 == profiles_4


def _await_consumed(workers, events, timeout_s=180):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(w.metric("personify_events_consumed_total") for w in workers) >= events:
            return
        time.sleep(1)
    raise AssertionError(f"workers did not consume {events} events within {timeout_s} s")


def _latest_profiles(settings, settle_s=4.0):
    """The compacted view of the profiles topic: the last record per person, once quiet."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"profiles-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topics.profiles])
    latest, quiet_since = {}, time.monotonic()
    while time.monotonic() - quiet_since < settle_s:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            latest[message.key()] = orjson.loads(message.value())
            quiet_since = time.monotonic()
    consumer.close()
    return latest


def _credit_records(settings, expected):
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"cmp-{time.monotonic_ns()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([settings.topics.credits])
    records, deadline = {}, time.monotonic() + 180
    while len(records) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            record = orjson.loads(message.value())
            records[record["credit_id"]] = record
    consumer.close()
    assert len(records) == expected
    return records


assert Ledger  # the ledger is what subscribers use; read_credits folds into it
