import json
import shutil
import subprocess
import time
from dataclasses import replace

import orjson
import pytest

from personify.stack.processes import free_port
from personify.stack.worker_process import http_get
from processors.attribution import MODELS
from tests.integration.conftest import consume, produce

HOUR_MS = 3_600_000


class RedisServer:
    """A Redis of the test's own (append-only, so a restart keeps what was written)."""

    def __init__(self, directory):
        self.port, self.directory, self.process = free_port(), directory, None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.directory), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.1)
        pytest.fail("test Redis did not start")

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    if server.process.poll() is None:
        server.stop()


def _events(settings, start):
    t = settings.topics
    return [
        (t.page_views, b"dev-1", orjson.dumps({
            "schema": "page_view/1", "event_id": "pv-1", "ts": start, "anonymous_id": "dev-1",
            "user_id": None, "url": "https://www.example.com/?utm_source=google&utm_medium=cpc",
            "referrer": None})),
        (t.signups, b"dev-1", orjson.dumps({
            "schema": "signup/1", "event_id": "su-1", "ts": start + HOUR_MS,
            "anonymous_id": "dev-1", "user_id": "ada", "traits": {"company_size": 2000}})),
    ]


def _payment(settings, event_id, ts, amount):
    return (settings.topics.billing, b"ada", orjson.dumps({
        "schema": "billing/1", "event_id": event_id, "ts": ts, "user_id": "ada",
        "kind": "payment", "amount_minor": amount, "currency": "USD"}))


def _get(worker, path, token=None):
    """(status, JSON answer), bearing `token` only, whatever the worker's own."""
    status, body = http_get(replace(worker.settings, api_token=token or ""), path)
    return status, json.loads(body)


def _eventually(check, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _ada_paid_once(settings, start_worker, redis_server):
    """A worker on the test's Redis, and ada's visit, signup and first payment in its views."""
    settings = replace(settings, redis_url=redis_server.url)
    worker = start_worker(settings)
    start = int(time.time() * 1000) - 10 * HOUR_MS
    produce(settings, [*_events(settings, start), _payment(settings, "pay-1", start + 2 * HOUR_MS,
                                                           5_000)])
    assert _eventually(lambda: _get(worker, "/persons/ada")[1].get("lifetime_revenue_minor")
                       == 5_000)
    return settings, worker, start


def test_views_answer_who_the_person_is_and_catch_up_after_redis_was_down(
        settings, start_worker, redis_server):
    settings, worker, start = _ada_paid_once(settings, start_worker, redis_server)
    status, person = _get(worker, "/persons/ada")
    assert status == 200
    assert person["anonymous_ids"] == ["dev-1"] and person["segment"] == "Enterprise"
    assert person["journey"][0]["channel"] == "Paid Search"
    assert {c["model"] for c in person["credits"]} == set(MODELS)

    redis_server.stop()
    produce(settings, [_payment(settings, "pay-2", start + 3 * HOUR_MS, 7_000)])
    consume(settings, settings.topics.credits, expected=2 * len(MODELS))
    assert _eventually(lambda: worker.metric("personify_redis_up") == 0)
    assert worker.metric("personify_view_writes_pending") > 0
    assert _get(worker, "/persons/ada")[0] == 503

    redis_server.start()
    assert _eventually(lambda: _get(worker, "/persons/ada")[1].get("lifetime_revenue_minor")
                       == 12_000)
    assert len(_get(worker, "/persons/ada")[1]["credits"]) == 2 * len(MODELS)
    status, best = _get(worker, "/reports/best-customers?limit=5")
    assert status == 200 and best["customers"][0]["person_id"] == "ada"
    assert best["customers"][0]["acquisition_channel"] == "Paid Search"


def test_a_redis_that_lost_its_data_gets_the_views_back_from_kafka_by_itself(
        settings, start_worker, redis_server, tmp_path):
    settings, worker, start = _ada_paid_once(settings, start_worker, redis_server)
    # The Redis was new: the views were built from the topics once. The rebuild may itself
    # have written ada's views, a moment before it counts.
    assert _eventually(lambda: worker.metric("personify_view_rebuilds_total") == 1, 10)
    rebuilds = 1

    redis_server.stop()
    redis_server.directory = tmp_path / "redis-without-its-data"
    redis_server.directory.mkdir()
    redis_server.start()
    # Nothing new is sent: the profile and every credit come back from the topics alone.
    assert _eventually(lambda: {c["model"] for c in _get(worker, "/persons/ada")[1].get(
        "credits", [])} == set(MODELS))
    assert _get(worker, "/persons/ada")[1]["lifetime_revenue_minor"] == 5_000
    assert worker.metric("personify_view_rebuilds_total") == rebuilds + 1
    assert worker.metric("personify_redis_up") == 1


def test_api_errors_are_json_and_a_token_guards_every_route_but_health(
        settings, start_worker, redis_server):
    worker = start_worker(replace(settings, redis_url=redis_server.url, api_token="s3cret"))
    assert _get(worker, "/health")[0] == 200
    assert _get(worker, "/persons/ada") == (401, {
        "error": "unauthorized", "message": "send Authorization: Bearer <PERSONIFY_API_TOKEN>"})
    assert _get(worker, "/metrics")[0] == 401
    assert _get(worker, "/ready")[0] == 401
    assert _get(worker, "/persons/nobody", token="s3cret")[0] == 404
    assert _get(worker, "/reports/best-customers?limit=0", token="s3cret")[0] == 400
    assert _get(worker, "/reports/best-customers?limit=3", token="s3cret") == (
        200, {"customers": []})
    assert _get(worker, "/metrics", token="s3cre")[0] == 401
    assert _get(worker, "/reports/retention")[0] == 401
    assert _get(worker, "/reports/retention?as_of=2026-01-01", token="s3cret")[0] == 400
    status, empty = _get(worker, "/reports/retention", token="s3cret")
    assert (status, empty["cohorts"], empty["as_of_ms"]) == (200, [], None)
    for limit in ("%C2%B2", "1" * 5000, "-1", "1.0", "%EF%BC%91"):  # ², many digits, fullwidth 1
        assert _get(worker, f"/reports/best-customers?limit={limit}", token="s3cret")[0] == 400


def _status(worker, path):
    return http_get(replace(worker.settings, api_token=""), path)[0]


def _listening_addresses(port):
    """Local addresses of the sockets listening on `port` (Linux's /proc/net/tcp*)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    addresses.add(address)
    return addresses


def test_the_worker_listens_on_loopback_only_and_serves_none_of_faust_s_own_pages(
        settings, start_worker):
    worker = start_worker(replace(settings, api_token="s3cret"))
    assert _listening_addresses(settings.web_port) == {"0100007F"}  # 127.0.0.1, nothing else
    for path in ("/table/", "/table/person-facts/ada/", "/router/",
                 "/router/topics/", "/graph/", "/stats/"):
        assert _status(worker, path) == 404, path
