"""The README's walk-through and SDK snippet, run as written against the real broker (on fresh
topics; `stack down` on an empty cache directory, so it stops nothing of the running stack)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from streams.topology import Settings
from tests.integration.conftest import consume
from tests.unit.test_readme import blocks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(command: str, settings: Settings, cwd: Path) -> subprocess.CompletedProcess:
    words = shlex.split(command.split("#")[0])
    assert words[0] == ".venv/bin/personify"
    return subprocess.run([sys.executable, "-m", "personify.cli", *words[1:]], cwd=cwd,
                          env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


def test_the_walk_through_after_the_two_commands_runs_as_written(settings, tmp_path):
    [walk_through] = [block for block in blocks("sh") if "personify send" in block]
    settings = replace(settings, cache_dir=tmp_path / "cache")
    outputs = {}
    for line in walk_through.strip().splitlines():
        ended = run(line, settings, tmp_path)
        command = " ".join(shlex.split(line.split("#")[0])[1:3])
        outputs[command] = ended.stdout
        expected = 1 if command == "stack status" else 0  # the stack is not this cache's
        assert ended.returncode == expected, f"{line}\n{ended.stdout[-2000:]}{ended.stderr[-2000:]}"
        assert "Traceback" not in ended.stderr
    lines = sum(1 for _ in (tmp_path / "events.jsonl").open())
    assert f"{lines} of {lines} events delivered" in outputs["send events.jsonl"]
    assert "0 rejected lines, 0 delivery failures" in outputs["send events.jsonl"]
    assert "no credits yet" in outputs["credits"]
    assert "the port answers" in outputs["stack status"]
    assert "was not running" in outputs["stack down"]


def test_the_sdk_snippet_runs_as_written_with_the_broker_from_the_environment(settings):
    [snippet] = [block for block in blocks("python") if "Personify(" in block]
    ended = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT,
                           env={**os.environ, **settings.to_env()},
                           capture_output=True, text=True, timeout=60)
    assert ended.returncode == 0, ended.stderr
    topics = settings.topics
    assert len(consume(settings, topics.page_views, expected=1)) == 1
    assert len(consume(settings, topics.signups, expected=1)) == 1
    assert len(consume(settings, topics.billing, expected=3)) == 3


def test_send_takes_plain_events_beside_topic_and_value_lines(settings, tmp_path):
    event = ('{"schema": "billing/1", "event_id": "p-%d", "ts": "2025-01-01T10:00:00Z", '
             '"user_id": "user-1", "kind": "payment", "amount_minor": 4900, "currency": "EUR"}')
    lines = [event % 1, '{"topic": "billing-v1", "value": %s}' % (event % 2)]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    ended = run(".venv/bin/personify send events.jsonl --no-progress", settings, tmp_path)
    assert ended.returncode == 0, ended.stderr
    assert "2 of 2 events delivered" in ended.stdout
    assert len(consume(settings, settings.topics.billing, expected=2)) == 2
