import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import orjson

from personify.credits import read_credits
from processors.attribution import MODELS
from processors.money import default_currency_table, to_reporting
from tests.integration.test_event_time_through_the_broker import (
    CreditReader,
    line_sums,
    reference,
)


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


def test_every_model_credits_exactly_payments_minus_refunds_and_first_touch_matches_truth(
        settings, start_worker, tmp_path):
    events, truth = _simulate(tmp_path, people=1500, seed=7)
    expected = _expected_revenue(events)
    resolved_expected, _ = reference(events.read_bytes().splitlines())
    start_worker(settings)
    reader = CreditReader(settings)
    _cli(settings, "send", str(events))

    resolved = reader.read_until(resolved_expected)  # corrections settle, then compare

    assert resolved == resolved_expected
    ledger = read_credits(settings)
    assert ledger.credit_sets == len(expected) * len(MODELS)
    for model in MODELS:
        assert ledger.by_model[model] == sum(expected.values()), model
    channels = ledger.by_model_person_channel["first_touch"]
    unambiguous = [p for p in truth["people"] if p["acquisition_channel"] and not p["ambiguous"]
                   and p["user_id"] in channels]
    assert len(unambiguous) >= 20
    mismatched = [p["user_id"] for p in unambiguous
                  if channels[p["user_id"]] != p["acquisition_channel"]]
    assert mismatched == []


def test_a_worker_killed_during_a_burst_of_corrections_loses_and_doubles_nothing(
        settings, start_worker, tmp_path):
    """Billing first, then the touches: nearly every credit is corrected as they arrive, and
    the worker is killed in the middle of it and restarted on its own RocksDB state."""
    settings = replace(settings, store="rocksdb://")
    events, _ = _simulate(tmp_path, people=3000, seed=3)
    lines = events.read_bytes().splitlines()
    expected, _ = reference(lines)
    billing = [line for line in lines if line.startswith(b'{"topic":"billing-v1"')]
    reordered = tmp_path / "billing-first.jsonl"
    reordered.write_bytes(b"\n".join(billing + [x for x in lines if x not in set(billing)]))
    worker = start_worker(settings)
    reader = CreditReader(settings)
    _cli(settings, "send", "--no-progress", str(reordered))
    time.sleep(1.5)
    worker.kill()
    start_worker(settings, name="restarted")

    resolved = reader.read_until(expected)

    assert resolved == expected
    assert reader.sums() == line_sums(resolved)
    assert sum(r["revision"] > 1 for r in reader.records) > 100
    ledger = read_credits(settings)
    assert ledger.credit_sets == len(expected)
    assert {model: ledger.by_model[model] for model in MODELS} == {
        model: sum(r["reporting_amount_minor"] for r in resolved.values() if r["model"] == model)
        for model in MODELS}
    assert "duplicate_event_id" not in read_dead_letter_reasons(settings)


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
