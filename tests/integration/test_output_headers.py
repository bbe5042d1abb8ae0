"""Every record the collector and the worker write says what it is in its Kafka headers."""

from __future__ import annotations

import base64
import time
import uuid

import orjson
import pytest

from processors.attribution import MODELS
from streams.metrics import STAGES
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import consume, produce

pytestmark = pytest.mark.integration

CONFIG = """
[sources.backend]
write_key = "backend-key"
"""
BACKEND = {"Authorization": "Basic " + base64.b64encode(b"backend-key:").decode()}


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _headers(message) -> dict[str, bytes]:
    headers = dict(message.headers() or ())
    assert len(headers) == len(message.headers() or ()), "a header name appears twice"
    return headers


def _assert_described(message, schema: str) -> None:
    assert _headers(message) == {"content-type": b"application/json",
                                 "schema": schema.encode(),
                                 "schema-version": schema.partition("/")[2].encode()}
    assert orjson.loads(message.value())["schema"] == schema


def test_collector_and_worker_records_carry_content_type_schema_and_version(
        settings, start_worker, tmp_path):
    t = settings.topics
    collector = CollectorProcess(settings, CONFIG, tmp_path).start()
    try:
        user, anon = f"user-{uuid.uuid4().hex[:6]}", f"anon-{uuid.uuid4().hex[:6]}"
        batch = [
            {"schema": "page_view/1", "event_id": "pv-1", "ts": _now_iso(), "anonymous_id": anon,
             "url": "https://www.example.com/?utm_source=google&utm_medium=cpc"},
            {"schema": "signup/1", "event_id": "su-1", "ts": _now_iso(), "anonymous_id": anon,
             "user_id": user},
            {"schema": "billing/1", "event_id": "pay-1", "ts": _now_iso(), "user_id": user,
             "kind": "payment", "amount_minor": 4900, "currency": "EUR"},
            {"type": "alias", "messageId": "al-1", "userId": user, "previousId": anon},
        ]
        status, _, answer = collector.post("/v1/batch", {"batch": batch}, **BACKEND)
        assert status == 200 and (answer["accepted"], answer["rejected"]) == (3, 1), answer
    finally:
        collector.stop()
    produce(settings, [
        (t.billing, user.encode(), b"{not json"),
        (t.billing, user.encode(), orjson.dumps({
            "schema": "billing/1", "event_id": "ref-1", "ts": _now_iso(), "user_id": user,
            "kind": "refund", "amount_minor": 100, "currency": "EUR",
            "refund_of": "pay-unknown"})),
    ])
    worker = start_worker(settings)

    for topic, schema in ((t.page_views, "page_view/1"), (t.signups, "signup/1")):
        (message,) = consume(settings, topic, expected=1, settle_s=0.5)
        _assert_described(message, schema)
    billing = consume(settings, t.billing, expected=3, settle_s=0.5)
    (from_collector,) = [m for m in billing if m.headers()]  # the other two were produced bare
    _assert_described(from_collector, "billing/1")

    credits = consume(settings, t.credits, expected=len(MODELS))
    profiles = consume(settings, t.profiles, expected=1)
    dead_letters = consume(settings, t.dead_letters, expected=3)
    for message in credits:
        _assert_described(message, "credit/2")
    for message in profiles:
        _assert_described(message, "profile/1")
    for message in dead_letters:
        _assert_described(message, "dead_letter/1")
    reasons = sorted(orjson.loads(m.value())["reason"] for m in dead_letters)
    assert reasons == ["not_json", "refund_unknown_payment", "unmapped_event"]
    for stage in STAGES:  # the processing time of every stage's takes is measured
        assert worker.metric("personify_take_seconds_count", stage=stage) >= 1, stage
