"""examples/consume_credits.py, run as a consumer team would, ends with the current credits of
the batch rule (`processors.reference.current_credits`) on a real worker's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from processors.attribution import MODELS
from processors.reference import current_credits
from tests.integration.conftest import consume, produce, producer, values

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consume_credits.py"
PEOPLE, SEED = 150, 5


def _cli(settings, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "personify.cli", *args],
                            env={**os.environ, **settings.to_env()},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _billing_then_touches(tmp_path: Path) -> tuple[Path, Path, int]:
    """A simulated log split in two, its billing and the rest (a history import): credited
    before their touches arrive, the payments are all corrected later. Also: how many revenue
    events it has."""
    events = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, "-m", "personify.cli", "simulate", "--people", str(PEOPLE),
                    "--seed", str(SEED), "--malformed-share", "0", "--no-progress",
                    "--out", str(events)], check=True, timeout=300, capture_output=True)
    lines = [orjson.loads(line) for line in events.read_bytes().splitlines()]
    billing = [line for line in lines if line["topic"] == "billing-v1"]
    parts = tmp_path / "billing.jsonl", tmp_path / "touches.jsonl"
    for path, part in zip(parts, (billing, [line for line in lines if line not in billing]),
                          strict=True):
        path.write_bytes(b"\n".join(orjson.dumps(line) for line in part))
    unique = {line["value"]["event_id"] for line in billing
              if line["value"]["kind"] in ("payment", "refund")}
    return *parts, len(unique)


def test_the_example_keeps_the_current_credits_of_a_corrected_stream(
        settings, start_worker, tmp_path):
    billing, touches, revenue_events = _billing_then_touches(tmp_path)
    _cli(settings, "send", "--no-progress", str(billing))
    start_worker(settings)
    t = settings.topics
    first = consume(settings, t.credits, expected=revenue_events * len(MODELS), timeout_s=240)
    _cli(settings, "send", "--no-progress", str(touches))
    messages = consume(settings, t.credits, expected=len(first) + 1, timeout_s=240,
                       settle_s=10)
    records = values(messages)
    assert Counter(r["op"] for r in records)["retract"] > 0, "no correction to exercise"
    # A crash re-sends records identical (some, as older writers did, without headers), and
    # a record of another schema shares the topic: its headers say so, its value is not read.
    produce(settings, [(t.credits, m.key(), m.value()) for m in messages[::7]])
    foreign = producer(settings)
    for m in messages[3::11]:
        foreign.produce(t.credits, key=m.key(), value=m.value(), headers=m.headers())
    foreign.produce(t.credits, key=b"user-x", value=b"not even JSON",
                    headers=[("content-type", b"text/plain"), ("schema", b"profile/1")])
    assert foreign.flush(30) == 0

    out = tmp_path / "current.json"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--bootstrap", settings.kafka_bootstrap,
         "--topic", t.credits, "--group", f"{settings.app_id}-example",
         "--exit-when-idle", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr

    answer = json.loads(out.read_text())
    expected = current_credits(records)
    assert answer["current_credits"] == expected
    sums: Counter = Counter()
    for credit in expected.values():
        for line in credit["lines"]:
            sums[credit["model"], line["channel"]] += line["reporting_amount_minor"]
    totals = {(t["model"], t["channel"]): t["reporting_amount_minor"] for t in answer["totals"]}
    assert {k: v for k, v in totals.items() if v} == {k: v for k, v in sums.items() if v}
    assert f"{len(expected)} current credits" in result.stdout
