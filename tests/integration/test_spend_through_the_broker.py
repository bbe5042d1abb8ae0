"""Spend and a simulated log through the real broker and a real worker: spend by channel on
/metrics equals the batch computation to the minor unit, duplicates included; GET
/reports/spend equals the report's spend table built from the topics, figure for figure; and
the worker's customers by channel are the batch computation's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace

import orjson

from personify.demo import read_spend
from personify.report import TopicReader
from processors.config import PipelineConfig
from processors.spend import SpendBook
from processors.validation import decode
from readmodels.report import CreditBook, ProfileBook, build_report
from readmodels.spend_return import as_dict
from tests.chaos.test_kills import Expected, send
from tests.integration.test_event_time_through_the_broker import read_profiles_until
from tests.integration.test_serving_views import redis_server  # noqa: F401 - a fixture

CONFIG = PipelineConfig()
MODELS = CONFIG.attribution.models


def _simulate(tmp_path) -> list[dict]:
    path = tmp_path / "log.jsonl"
    subprocess.run([sys.executable, "-m", "personify.cli", "simulate", "--people", "3000",
                    "--days", "60", "--seed", "5", "--malformed-share", "0.02", "--spend",
                    "--no-progress", "--out", str(path)], check=True, timeout=300,
                   capture_output=True)
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _is_spend(line: dict) -> bool:
    return "value" in line and line["value"]["schema"] == "spend/1"


def _batch_spend(lines: list[dict], now_ms: int) -> dict[str, int]:
    book = SpendBook(CONFIG.spend)
    for line in lines:
        if _is_spend(line):
            book.add_event(decode(orjson.dumps(line["value"]), "spend", now_ms=now_ms,
                                  config=CONFIG.validation))
    return book.by_channel()


def _report_rows(settings) -> list[dict]:
    profiles, credits = ProfileBook(), CreditBook()
    with TopicReader(settings, settings.topics.profiles) as reader:
        reader.read_to_end(profiles.add)
    with TopicReader(settings, settings.topics.credits) as reader:
        reader.read_to_end(credits.add)
    report = build_report(profiles, credits, models=MODELS, currency="USD", exponent=2,
                          spend_minor=read_spend(settings, CONFIG))
    return orjson.loads(orjson.dumps(as_dict(report.spend, MODELS)))


def test_spend_and_return_are_the_same_on_every_surface_and_equal_the_batch(
        settings, start_worker, redis_server, tmp_path):  # noqa: F811
    settings = replace(settings, redis_url=redis_server.url)
    lines = _simulate(tmp_path)
    spend_lines = [line for line in lines if _is_spend(line)]
    expected = Expected([line for line in lines if not _is_spend(line)])
    batch = _batch_spend(lines, expected.now_ms)
    assert len(batch) == 4 and all(amount > 0 for amount in batch.values())
    worker = start_worker(settings)
    off_midnight = {**spend_lines[0]["value"], "event_id": "late", "ts": 1_735_700_000_000}
    bad = [{"topic": settings.topics.spend, "key": "x", "raw": "{not json"},
           {"topic": settings.topics.spend, "key": "x", "raw": orjson.dumps(off_midnight).decode()}]
    send(settings, lines + spend_lines[::7] + bad).join()  # every 7th spend line sent twice

    assert read_profiles_until(settings, expected.profiles, timeout_s=240) == expected.profiles
    customers = Counter(p["acquisition_channel"] for p in expected.profiles.values()
                        if p["conversion_ts"] is not None)
    deadline, surfaces = time.monotonic() + 90, {}
    while time.monotonic() < deadline:  # the views are published every 5 s
        status, body = worker.get("/reports/spend")
        api = json.loads(body)["channels"] if status == 200 else None
        surfaces = {
            "metrics": {channel: worker.metric("personify_spend_minor_units_total",
                                               channel=channel) for channel in batch},
            "api": api, "report": _report_rows(settings)}
        if surfaces["metrics"] == batch and api == surfaces["report"]:
            break
        time.sleep(1)
    assert surfaces["metrics"] == batch
    assert surfaces["api"] == surfaces["report"]
    rows = {row["channel"]: row for row in surfaces["api"]}
    assert {c: r["spend_minor"] for c, r in rows.items()} == batch
    assert {c: r["customers"] for c, r in rows.items()} == {c: customers[c] for c in batch}
    for row in surfaces["api"]:
        if row["customers"]:
            cac = row["cac_minor"]
            assert cac["numerator"] * row["customers"] == row["spend_minor"] * cac["denominator"]
    assert worker.metric("personify_duplicate_events_total",
                         topic=settings.topics.spend) == len(spend_lines[::7])
    assert worker.metric("personify_events_processed_total",
                         topic=settings.topics.spend) == len(spend_lines)
    assert worker.metric("personify_dead_letters_total", topic=settings.topics.spend) == 2


def test_a_worker_killed_while_counting_spend_counts_every_line_once_after_restart(
        settings, start_worker, tmp_path):
    settings = replace(settings, store="rocksdb://")
    spend_lines = [line for line in _simulate(tmp_path) if _is_spend(line)]
    batch = _batch_spend(spend_lines, time.time_ns() // 1_000_000)
    worker = start_worker(settings)
    send(settings, spend_lines).join()
    time.sleep(0.3)
    worker.kill()  # SIGKILL, whatever it was doing
    send(settings, spend_lines[::3]).join()  # copies, read by the restarted worker
    worker = start_worker(settings, name="restarted")
    deadline, counted = time.monotonic() + 90, {}
    while time.monotonic() < deadline and counted != batch:
        counted = {channel: worker.metric("personify_spend_minor_units_total", channel=channel)
                   for channel in batch}
        time.sleep(0.5)
    assert counted == batch
    time.sleep(6)  # anything replayed late would show now
    assert {channel: worker.metric("personify_spend_minor_units_total", channel=channel)
            for channel in batch} == batch
