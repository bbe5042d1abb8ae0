"""Hostile messages on every input topic, mixed into a simulated log: each is dead-lettered
exactly once, with its original bytes, its source position and the reason the validator gives
it, and the credits and profiles equal the batch computation of the log without them.

The hostile messages are built from the log's own events (real ids, real people), so a
validator that let one through would change someone's credits. Seeded by PERSONIFY_CHAOS_SEED.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

import orjson

from processors.config import PipelineConfig
from processors.validation import Rejection, decode
from tests.chaos.test_kills import (
    SEED,
    Expected,
    _simulate,
    assert_as_if_nothing_happened,
    dead_letters,
    send,
)
from tests.integration.conftest import producer
from tests.integration.test_event_time_through_the_broker import CreditReader

HOSTILE_PER_TOPIC = 700
IN_RANGE_MS = 1_741_562_464_952
KIND_OF_TOPIC = {"page_view/1": "page_view", "signup/1": "signup", "billing/1": "billing"}
Mutation = Callable[[random.Random, dict], bytes]


def _in_event_id(event: dict, prefix: bytes) -> bytes:
    return orjson.dumps(event).replace(b'"event_id":"', b'"event_id":"' + prefix)


def _with(event: dict, **fields) -> bytes:
    return orjson.dumps({**event, **fields})


def _without(event: dict, rng: random.Random) -> bytes:
    field = rng.choice(["schema", "event_id", "ts", *(
        ["anonymous_id", "url"] if event["schema"] == "page_view/1" else ["user_id"])])
    return orjson.dumps({k: v for k, v in event.items() if k != field})


MUTATIONS: dict[str, Mutation] = {
    "random bytes": lambda rng, e: rng.randbytes(rng.randint(1, 300)),
    "empty value": lambda rng, e: b"",
    "truncated JSON": lambda rng, e: orjson.dumps(e)[:rng.randint(1, 40)],
    "not an object": lambda rng, e: rng.choice([b"[]", b"42", b'"event"', b"null", b"true"]),
    "invalid UTF-8": lambda rng, e: _in_event_id(e, b"\xff\xfe"),
    "lone surrogate": lambda rng, e: _in_event_id(e, b"\\ud800"),
    "byte order mark": lambda rng, e: b"\xef\xbb\xbf" + orjson.dumps(e),
    "deep nesting": lambda rng, e: orjson.dumps(e)[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000
    + b"}",
    "NaN": lambda rng, e: orjson.dumps(e).replace(b'"ts":', b'"ts":NaN,"was":'),
    "missing field": lambda rng, e: _without(e, rng),
    "wrong type": lambda rng, e: _with(e, ts=[e["ts"]]),
    "integral float": lambda rng, e: _with(e, ts=float(IN_RANGE_MS)),
    "huge number": lambda rng, e: _with(e, ts=0).replace(b'"ts":0', b'"ts":' + b"9" * 40),
    "control character": lambda rng, e: _with(
        e, event_id=e["event_id"] + rng.choice(["\x00", "\x07", "\n", "\x1b", "\x7f"])),
    "unknown schema": lambda rng, e: _with(e, schema=e["schema"][:-1] + "9"),
    "time out of range": lambda rng, e: _with(e, ts=rng.choice([0, 1, 32_503_680_000_000])),
    "oversized": lambda rng, e: _with(e, event_id="x" * 70_000),
    "array of events": lambda rng, e: orjson.dumps([e, e]),
}
BILLING_MUTATIONS: dict[str, Mutation] = {
    "unknown currency": lambda rng, e: _with(e, currency="QQQ"),
    "empty currency": lambda rng, e: _with(e, currency=""),
    "lowercase currency": lambda rng, e: _with(e, currency=e["currency"].lower()),
    "non-positive amount": lambda rng, e: _with(e, amount_minor=rng.choice([0, -1, -88000])),
    "amount as a string": lambda rng, e: _with(e, amount_minor="49.00"),
    "unknown kind": lambda rng, e: _with(e, kind="chargeback"),
}


def hostile_messages(lines: list[dict], topics, rng: random.Random, now_ms: int
                     ) -> list[tuple[str, bytes | None, bytes, str]]:
    """(topic, key, value, reason the validator gives) for every hostile message, each built
    from a page view, a signup or a payment of the log and checked to be refused, so the test
    cannot pass by sending valid events."""
    config, messages = PipelineConfig().validation, []
    by_schema: dict[str, list[dict]] = {}
    for line in lines:
        if "value" in line and line["value"].get("kind") in (None, "payment"):
            by_schema.setdefault(line["value"]["schema"], []).append(line["value"])
    for schema, kind in KIND_OF_TOPIC.items():
        topic = {"page_view": topics.page_views, "signup": topics.signups,
                 "billing": topics.billing}[kind]
        mutations = {**MUTATIONS, **(BILLING_MUTATIONS if kind == "billing" else {})}
        for index in range(HOSTILE_PER_TOPIC):
            name = list(mutations)[index % len(mutations)]
            value = mutations[name](rng, rng.choice(by_schema[schema]))
            refused = decode(value, kind, now_ms=now_ms, config=config)
            assert isinstance(refused, Rejection), f"{name} on {topic}: {value[:200]!r}"
            key = rng.choice([None, b"", rng.randbytes(8), value[:16]])
            messages.append((topic, key, value, refused.reason))
    rng.shuffle(messages)
    return messages


def produce_positions(settings, messages) -> dict[tuple[str, int, int], tuple[bytes, str]]:
    """Send `messages`; each one's bytes and expected reason by where the broker put it."""
    positions: dict[tuple[str, int, int], tuple[bytes, str]] = {}
    client = producer(settings)
    for topic, key, value, reason in messages:
        def delivered(error, message, value=value, reason=reason):
            assert error is None, error
            positions[(message.topic(), message.partition(), message.offset())] = (value, reason)
        client.produce(topic, key=key, value=value, on_delivery=delivered)
        client.poll(0)
    assert client.flush(60) == 0
    return positions


def test_hostile_messages_on_every_input_topic_are_dead_lettered_once_and_change_nothing(
        settings, start_worker, tmp_path):
    rng = random.Random(SEED)
    lines = _simulate(tmp_path, "log", 800, SEED)
    expected = Expected(lines)
    hostile = hostile_messages(lines, settings.topics, rng, expected.now_ms)
    reader = CreditReader(settings)
    worker = start_worker(settings)

    stream = send(settings, lines, rate=3000)
    positions = produce_positions(settings, hostile)
    stream.join()

    expected.dead_letters += len(positions)
    assert_as_if_nothing_happened(settings, expected, reader)
    seen: set[tuple[str, int, int]] = set()
    for record in dead_letters(settings):
        position = (record["topic"], record["partition"], record["offset"])
        assert position not in seen, f"{position} dead-lettered twice"
        seen.add(position)
        if position in positions:
            value, reason = positions.pop(position)
            assert record["reason"] == reason, (position, value[:200])
            assert base64.b64decode(record["original_b64"]) == value[:256 * 1024]
            assert record["original_size"] == len(value)
    assert positions == {}, f"seed {SEED}: {len(positions)} hostile messages not dead-lettered"
    assert worker.get("/ready")[0] == 200
