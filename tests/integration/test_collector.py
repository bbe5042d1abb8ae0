"""The HTTP collector as a process of its own, against the real broker."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from personify.stack.processes import free_port
from schemas.contract import validator
from streams.partitioner import partition_for
from streams.topology import Settings, ensure_topics
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import consume, isolated_settings, values

pytestmark = pytest.mark.integration

ORIGIN = "https://www.example.com"
CONFIG = f"""
allowed_origins = ["{ORIGIN}"]
max_body_kib = 64
delivery_timeout_ms = 3000
body_timeout_s = 2
retry_after_s = 3
[sources.web]
write_key = "web-key"
sends = ["page_view", "signup"]
[sources.backend]
write_key = "backend-key"
"""
BACKEND = {"Authorization": "Basic " + base64.b64encode(b"backend-key:").decode()}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def page_view(anonymous_id: str) -> dict:
    return {"schema": "page_view/1", "event_id": str(uuid.uuid4()), "ts": now_iso(),
            "anonymous_id": anonymous_id, "url": "https://www.example.com/?utm_source=google"}


@pytest.fixture(scope="module")
def shared(base_settings: Settings, tmp_path_factory) -> Iterator[CollectorProcess]:
    """One collector for the tests that only read answers (its topics are its own)."""
    workdir = tmp_path_factory.mktemp("collector")
    own = isolated_settings(base_settings, workdir)
    ensure_topics(own)
    collector = CollectorProcess(own, CONFIG, workdir).start()
    yield collector
    collector.stop()


@pytest.fixture
def collector(settings: Settings, tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(settings, CONFIG, tmp_path).start()
    yield process
    process.stop()


def metric(collector: CollectorProcess, name: str, **labels: str) -> float:
    status, _, text = collector.request("GET", "/metrics")
    assert status == 200
    return sum(sample.value for family in text_string_to_metric_families(text.decode())
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def test_accepted_events_are_on_their_topics_keyed_and_partitioned_like_the_sdk(collector):
    topics, partitions = collector.settings.topics, collector.settings.partitions
    batch = [
        page_view("anon-1"),
        {"schema": "signup/1", "event_id": "su-1", "ts": now_iso(), "anonymous_id": "anon-1",
         "user_id": "user-1", "traits": {"company_size": 250}},
        {"schema": "billing/1", "event_id": "pay-1", "ts": now_iso(), "user_id": "user-1",
         "kind": "payment", "amount_minor": 4900, "currency": "EUR"},
        {"type": "page", "messageId": "seg-pv", "anonymousId": "anon-2", "timestamp": now_iso(),
         "context": {"page": {"url": "https://www.example.com/pricing",
                              "referrer": "https://www.google.com/"}}},
        {"type": "identify", "messageId": "seg-id", "anonymousId": "anon-2", "userId": "user-2",
         "traits": {"email": "ada@example.com", "company": {"employee_count": 12}}},
        {"type": "track", "event": "Order Completed", "messageId": "seg-pay", "userId": "user-2",
         "properties": {"amount_minor": 1999, "currency": "USD"}},
    ]
    status, _, answer = collector.post("/v1/batch", {"batch": batch}, **BACKEND)
    assert status == 200, answer
    assert (answer["accepted"], answer["rejected"]) == (6, 0)
    expected_keys = {topics.page_views: {b"anon-1", b"anon-2"},
                     topics.signups: {b"anon-1", b"anon-2"},
                     topics.billing: {b"user-1", b"user-2"}}
    for topic, keys in expected_keys.items():
        messages = consume(collector.settings, topic, expected=2, settle_s=0.5)
        assert {m.key() for m in messages} == keys
        for message in messages:
            assert message.partition() == partition_for(message.key(), partitions)
    signups = values(consume(collector.settings, topics.signups, expected=2, settle_s=0.1))
    segment_signup = next(s for s in signups if s["event_id"] == "seg-id")
    assert segment_signup["traits"] == {"company_size": 12}
    assert metric(collector, "personify_collector_events_accepted_total",
                  schema="billing/1") == 2


def test_rejected_events_are_in_the_dead_letter_topic_with_their_reason(collector):
    bad = [
        {"schema": "billing/1", "event_id": "pay-f", "ts": now_iso(), "user_id": "user-1",
         "kind": "payment", "amount_minor": 49.0, "currency": "EUR"},
        {"type": "track", "event": "Button Clicked", "messageId": "seg-x", "userId": "u"},
        {"schema": "page_view/9", "event_id": "pv-9"},
    ]
    web = {"Authorization": "Basic " + base64.b64encode(b"web-key:").decode()}
    status, headers, answer = collector.post(
        "/v1/batch", {"batch": [page_view("anon-3"), *bad]}, **web)
    assert status == 200
    reasons = [result.get("reason") for result in answer["results"]]
    assert reasons == [None, "source_not_allowed", "unmapped_event", "unknown_schema"]
    letters = values(consume(collector.settings, collector.settings.topics.dead_letters,
                             expected=3, settle_s=0.5))
    assert len(letters) == 3
    for letter in letters:
        validator("dead_letter/1")(letter)
        assert (letter["topic"], letter["partition"], letter["offset"]) == (
            "http:/v1/batch", -1, -1)
        assert letter["http"]["source"] == "web"
        assert letter["http"]["request_id"] == headers["X-Request-Id"]
        original = orjson.loads(base64.b64decode(letter["original_b64"]))
        assert original == bad[letter["http"]["index"] - 1]
        assert letter["reason"] == reasons[letter["http"]["index"]]
    assert metric(collector, "personify_collector_events_rejected_total",
                  reason="unmapped_event") == 1


def test_a_body_that_is_not_json_is_400_and_dead_lettered(collector):
    status, _, answer = collector.post("/v1/batch", b"{\"batch\": [", **BACKEND)
    assert status == 400 and answer["error"] == "not_json"
    [letter] = values(consume(collector.settings, collector.settings.topics.dead_letters,
                              expected=1, settle_s=0.5))
    assert base64.b64decode(letter["original_b64"]) == b"{\"batch\": ["


def test_send_beacon_text_plain_with_the_write_key_in_the_body(collector):
    body = orjson.dumps({"writeKey": "web-key", "batch": [page_view("anon-beacon")]})
    status, headers, answer = collector.post(
        "/v1/batch", body, **{"Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN})
    assert status == 200 and answer["accepted"] == 1
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    [message] = consume(collector.settings, collector.settings.topics.page_views, expected=1,
                        settle_s=0.5)
    assert message.key() == b"anon-beacon"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()},
    {"Authorization": "Bearer backend-key"},
])
def test_a_wrong_or_missing_write_key_is_401(shared, headers):
    status, response_headers, answer = shared.post("/v1/batch", {"batch": []}, **headers)
    assert status == 401 and answer["error"] == "unauthorized"
    assert "Basic" in response_headers["WWW-Authenticate"]


def test_a_body_above_the_limit_is_413(shared):
    status, _, answer = shared.post("/v1/batch", b"{" + b" " * 70_000 + b"}", **BACKEND)
    assert status == 413 and answer["error"] == "payload_too_large"


def test_cors_preflight_answers_the_allowed_origins_only(shared):
    status, headers, _ = shared.request("OPTIONS", "/v1/batch", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, headers, answer = shared.request("OPTIONS", "/v1/batch",
                                             headers={"Origin": "https://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, _, answer = shared.post("/v1/batch", {"batch": []}, Origin="https://evil.example",
                                    **BACKEND)
    assert status == 403 and answer["error"] == "origin_not_allowed"


def test_a_broker_that_cannot_be_reached_is_503_with_retry_after(settings, tmp_path):
    dead = replace(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    collector = CollectorProcess(dead, CONFIG.replace("delivery_timeout_ms = 3000",
                                                      "delivery_timeout_ms = 1000"),
                                 tmp_path).start()
    try:
        started = time.monotonic()
        status, headers, answer = collector.post("/v1/batch", {"batch": [page_view("a")]},
                                                 **BACKEND)
        assert status == 503 and answer["error"] == "broker_unavailable"
        assert headers["Retry-After"] == "3"
        assert time.monotonic() - started < 5
        assert collector.request("GET", "/health")[0] == 200
    finally:
        collector.stop()


def test_a_slow_client_gets_408_while_others_are_served(shared):
    with socket.create_connection(("127.0.0.1", shared.port), timeout=10) as slow:
        slow.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Authorization: " + BACKEND["Authorization"].encode() + b"\r\n\r\n{\"ba")
        assert shared.request("GET", "/health")[0] == 200
        answer = slow.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert orjson.loads(body)["error"] == "request_timeout"
    assert shared.alive()


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12)
bodies = st.one_of(
    st.binary(max_size=300),
    json_like.map(orjson.dumps),
    st.lists(json_like, max_size=4).map(lambda batch: orjson.dumps({"batch": batch})),
    st.just(b"[" * 5000),
    st.just(b"{\"batch\": [" + b"1," * 40_000 + b"1]}"),
)
authorizations = st.sampled_from([
    None, BACKEND["Authorization"], "Basic " + base64.b64encode(b"wrong:").decode(),
    "Basic ###", "Bearer x", "Basic " + base64.b64encode(b"\xff\xfe").decode()])
paths = st.sampled_from(["/v1/batch", "/v1/track", "/v1/p", "/v1/nothing", "/", "/v2/batch",
                         "/v1/batch/extra", "/personify.js", "/metrics/x"])
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"])


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, path=paths, body=bodies, authorization=authorizations)
def test_hostile_requests_get_a_clear_json_answer_and_the_process_stays_up(
        shared, method, path, body, authorization):
    headers = {"Content-Type": "text/plain"}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, response_headers, answer = shared.request(method, path, body, headers)
    if method == "GET" and path == "/personify.js":
        assert status == 200
        return
    assert response_headers["Content-Type"].startswith("application/json"), (status, answer)
    assert status in (200, 400, 401, 404, 405, 413), (status, answer)
    assert ("results" in answer) if status == 200 else ("error" in answer and answer["message"])
    assert shared.alive()
