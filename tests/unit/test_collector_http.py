import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from personify.collector.access import basic_user, source_of
from personify.collector.app import Collector, build_app
from personify.collector.config import CollectorConfig, Source
from personify.collector.delivery import Outgoing, Undelivered
from personify.collector.metrics import create_collector_metrics
from processors.config import PipelineConfig
from processors.intake import IntakeRules
from schemas.contract import validator
from streams.topology import Topics

NOW_MS = 1_741_161_600_000
ORIGIN = "https://www.example.com"
CONFIG = CollectorConfig(
    rules=IntakeRules(PipelineConfig().validation),
    sources=(Source("web", "web-key", frozenset({"page_view", "signup"})),
             Source("backend", "backend-key")),
    allowed_origins=frozenset({ORIGIN}), max_body_bytes=4096, retry_after_s=7)
PAGE_VIEW = {"schema": "page_view/1", "event_id": "pv-1", "ts": NOW_MS, "anonymous_id": "a-1",
             "url": "https://www.example.com/"}
PAYMENT = {"schema": "billing/1", "event_id": "pay-1", "ts": NOW_MS, "user_id": "u-1",
           "kind": "payment", "amount_minor": 4900, "currency": "EUR"}


class ListSink:
    """Stands where the Kafka delivery stands: keeps what would be produced, or refuses it."""

    def __init__(self, refuse: bool = False) -> None:
        self.messages: list[Outgoing] = []
        self.refuse = refuse

    async def send(self, messages: Sequence[Outgoing]) -> None:
        if self.refuse:
            raise Undelivered("no acknowledgement within 5000 ms")
        self.messages.extend(messages)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
async def client(sink: ListSink) -> AsyncIterator[TestClient]:
    collector = Collector(config=CONFIG, topics=Topics(), delivery=sink,
                          metrics=create_collector_metrics(), clock_ms=lambda: NOW_MS,
                          new_request_id=lambda: "req-1")
    async with TestClient(TestServer(build_app(collector))) as test_client:
        test_client.collector = collector
        yield test_client


async def post(client: TestClient, path: str, document, headers=None):
    body = document if isinstance(document, bytes) else orjson.dumps(document)
    response = await client.post(path, data=body, headers=headers or {})
    return response.status, await response.json(), response.headers


async def test_a_batch_is_answered_event_by_event_and_every_event_is_sent(client, sink):
    status, answer, headers = await post(
        client, "/v1/batch", {"batch": [PAGE_VIEW, PAYMENT | {"amount_minor": 49.0}]},
        basic("backend-key"))
    assert status == 200 and headers["X-Request-Id"] == "req-1"
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["results"][1]["reason"] == "wrong_type"
    topics = Topics()
    assert [(m.topic, m.key) for m in sink.messages] == [(topics.page_views, b"a-1"),
                                                          (topics.dead_letters, None)]


async def test_a_dead_letter_says_where_in_which_request_the_event_came(client, sink):
    await post(client, "/v1/batch", {"batch": [PAGE_VIEW, PAYMENT]}, basic("web-key"))
    letter = orjson.loads(sink.messages[1].value)
    validator("dead_letter/1")(letter)
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("http:/v1/batch", -1, -1)
    assert letter["http"] == {"source": "web", "request_id": "req-1", "index": 1}
    assert letter["reason"] == "source_not_allowed"
    assert orjson.loads(base64.b64decode(letter["original_b64"])) == PAYMENT


@pytest.mark.parametrize("path", ["/v1/page", "/v1/p"])
async def test_segment_single_event_routes_take_the_type_from_the_route(client, sink, path):
    message = {"messageId": "m-1", "anonymousId": "a-9", "timestamp": "2025-03-05T08:00:00Z",
               "context": {"page": {"url": "https://www.example.com/pricing"}}}
    status, answer, _ = await post(client, path, message, basic("web-key"))
    assert status == 200 and answer["accepted"] == 1
    assert orjson.loads(sink.messages[0].value)["url"] == "https://www.example.com/pricing"


async def test_send_beacon_posts_text_plain_with_the_write_key_in_the_body(client, sink):
    body = orjson.dumps({"writeKey": "web-key", "batch": [PAGE_VIEW]})
    response = await client.post("/v1/batch", data=body, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert len(sink.messages) == 1


@pytest.mark.parametrize("headers,document", [
    ({}, {"batch": [PAGE_VIEW]}),
    (basic("wrong"), {"batch": [PAGE_VIEW]}),
    ({"Authorization": "Bearer web-key"}, {"batch": [PAGE_VIEW]}),
    ({"Authorization": "Basic !!!"}, {"batch": [PAGE_VIEW]}),
    ({}, {"writeKey": "wrong", "batch": [PAGE_VIEW]}),
    (basic("wrong"), {"writeKey": "web-key", "batch": [PAGE_VIEW]}),
    ({}, b"not json at all"),
])
async def test_a_missing_or_wrong_write_key_is_401_and_nothing_is_sent(client, sink, headers,
                                                                       document):
    status, answer, response_headers = await post(client, "/v1/batch", document, headers)
    assert status == 401 and answer["error"] == "unauthorized"
    assert response_headers["WWW-Authenticate"].startswith("Basic")
    assert sink.messages == []


async def test_a_body_above_the_limit_is_413_without_being_read(client, sink):
    status, answer, _ = await post(client, "/v1/batch", b"x" * 5000, basic("backend-key"))
    assert status == 413 and answer["error"] == "payload_too_large"
    assert sink.messages == []


async def test_a_body_that_is_not_json_is_400_and_dead_lettered_whole(client, sink):
    status, answer, _ = await post(client, "/v1/batch", b"{broken", basic("backend-key"))
    assert status == 400 and answer["error"] == "not_json"
    letter = orjson.loads(sink.messages[0].value)
    assert base64.b64decode(letter["original_b64"]) == b"{broken"


async def test_a_broker_that_does_not_acknowledge_is_503_with_retry_after(client, sink):
    sink.refuse = True
    status, answer, headers = await post(client, "/v1/batch", {"batch": [PAGE_VIEW]},
                                         basic("backend-key"))
    assert status == 503 and answer["error"] == "broker_unavailable"
    assert headers["Retry-After"] == "7"


async def test_preflight_answers_allowed_origins_only(client):
    allowed = await client.options("/v1/batch", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    refused = await client.options("/v1/batch", headers={"Origin": "https://evil.example"})
    assert refused.status == 403 and (await refused.json())["error"] == "origin_not_allowed"


async def test_a_post_from_another_origin_is_403(client, sink):
    status, answer, _ = await post(client, "/v1/batch", {"batch": [PAGE_VIEW]},
                                   basic("web-key") | {"Origin": "https://evil.example"})
    assert status == 403 and sink.messages == []


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/nowhere", 404), ("POST", "/v2/batch", 404), ("POST", "/v1/nothing", 404),
    ("GET", "/v1/batch", 405), ("DELETE", "/health", 405),
])
async def test_unknown_routes_and_methods_answer_json(client, method, path, status):
    response = await client.request(method, path, headers=basic("backend-key"))
    assert response.status == status
    assert "error" in await response.json()


async def test_health_snippet_and_metrics(client):
    assert (await (await client.get("/health")).json()) == {"status": "ok"}
    snippet = await client.get("/personify.js")
    assert snippet.content_type == "application/javascript"
    assert "sendBeacon" in await snippet.text()
    await post(client, "/v1/batch", {"batch": [PAGE_VIEW, PAYMENT | {"currency": "ZZZ"}]},
               basic("backend-key"))
    text = await (await client.get("/metrics")).text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("personify_collector_events_accepted_total",
                    (("schema", "page_view/1"),))] == 1
    assert samples[("personify_collector_events_rejected_total",
                    (("reason", "unknown_currency"),))] == 1
    assert samples[("personify_collector_requests_total",
                    (("route", "/v1/batch"), ("status", "200")))] == 1
    assert samples[("personify_collector_request_duration_seconds_count",
                    (("route", "/v1/batch"),))] == 1


def test_basic_auth_is_read_as_segment_clients_send_it():
    assert basic_user(basic("key-1")["Authorization"]) == "key-1"
    assert basic_user("Basic " + base64.b64encode(b"key-1:ignored").decode()) == "key-1"
    assert basic_user("Basic " + base64.b64encode(b":").decode()) is None
    assert basic_user("Bearer key-1") is None


def test_every_write_key_is_compared():
    sources = CONFIG.sources
    assert source_of("backend-key", sources).name == "backend"
    assert source_of("backend-ke", sources) is None
    assert source_of("", replace(CONFIG, sources=()).sources) is None


def test_the_golden_http_dead_letter_is_what_the_collector_writes():
    from pathlib import Path

    from processors.dead_letters import HttpOrigin, dead_letter_record
    from processors.intake import read_item

    path = Path(__file__).resolve().parents[2] / "schemas" / "examples" / (
        "dead_letter.v1.http_unmapped_event.json")
    golden = orjson.loads(path.read_bytes())
    refused = read_item(orjson.loads(base64.b64decode(golden["original_b64"])),
                        allowed=frozenset({"billing"}), now_ms=golden["ts"], rules=CONFIG.rules)
    assert dead_letter_record(
        raw=refused.original, topic="http:/v1/batch", partition=-1, offset=-1,
        reason=refused.reason, message=refused.message, ts_ms=golden["ts"],
        http=HttpOrigin(**golden["http"])) == golden


async def test_every_message_carries_its_content_type_and_schema_in_headers(client, sink):
    await post(client, "/v1/batch", {"batch": [PAGE_VIEW, PAYMENT, PAYMENT | {"amount_minor": 0}]},
               basic("backend-key"))
    headers = [dict(m.headers) for m in sink.messages]
    assert [(h["schema"], h["schema-version"]) for h in headers] == [
        (b"page_view/1", b"1"), (b"billing/1", b"1"), (b"dead_letter/1", b"1")]
    assert {h["content-type"] for h in headers} == {b"application/json"}
