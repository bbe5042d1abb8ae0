import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import replace

import orjson
import pytest
import yaml

from ops.grafana import build_dashboard
from personify.stack.debian import ensure_program
from personify.stack.processes import free_port
from personify.stack.prometheus import LOCAL_CONFIG, RULES
from processors.attribution import MODELS
from tests.integration.conftest import consume, produce, values
from tests.integration.test_serving_views import RedisServer, _eventually

HOUR_MS = 3_600_000
SCRAPE = "1s"


class Prometheus:
    """A Prometheus of the test's own: the config `personify stack up` writes, scraping faster."""

    def __init__(self, directory, target: str) -> None:
        self.directory, self.target, self.port = directory, target, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        config = yaml.safe_load(LOCAL_CONFIG.format(rules=RULES, target=self.target,
                                                     authorization=""))
        config["global"] = {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE}
        config_file = self.directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self._log = open(self.directory / "prometheus.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [ensure_program("prometheus", "prometheus"), f"--config.file={config_file}",
             f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        if not _eventually(self._ready, timeout_s=20):
            pytest.fail("test Prometheus did not start:\n"
                        + (self.directory / "prometheus.log").read_text()[-2000:])
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def start_prometheus(tmp_path):
    servers: list[Prometheus] = []

    def start(worker) -> Prometheus:
        directory = tmp_path / f"prometheus-{len(servers)}"
        directory.mkdir()
        target = f"{worker.settings.web_host}:{worker.settings.web_port}"
        servers.append(Prometheus(directory, target).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _view(event_id, device, ts, url="https://www.example.com/", referrer=None):
    return {"schema": "page_view/1", "event_id": event_id, "ts": ts, "anonymous_id": device,
            "user_id": None, "url": url, "referrer": referrer}


def _signup(event_id, device, user, ts, **traits):
    return {"schema": "signup/1", "event_id": event_id, "ts": ts, "anonymous_id": device,
            "user_id": user, "traits": traits}


def _billing(event_id, user, ts, kind, **fields):
    return {"schema": "billing/1", "event_id": event_id, "ts": ts, "user_id": user,
            "kind": kind, **fields}


def _first_round(t, start):
    """Two customers with journeys, a subscription, a public device and a broken message."""
    public = [(t.signups, b"kiosk", _signup(f"su-k{i}", "kiosk", f"visitor-{i}",
                                            start + 3 * HOUR_MS + i)) for i in range(6)]
    return [
        (t.page_views, b"dev-1", _view(
            "pv-1", "dev-1", start, "https://www.example.com/?utm_source=google&utm_medium=cpc")),
        (t.page_views, b"dev-1", _view("pv-2", "dev-1", start + 26 * HOUR_MS,
                                       referrer="https://www.linkedin.com/")),
        (t.signups, b"dev-1", _signup("su-1", "dev-1", "ada", start + 27 * HOUR_MS,
                                      company_size=2000)),
        (t.page_views, b"dev-2", _view("pv-3", "dev-2", start + HOUR_MS)),
        (t.signups, b"dev-2", _signup("su-2", "dev-2", "bob", start + 2 * HOUR_MS)),
        *public,
        (t.page_views, b"kiosk", _view("pv-k1", "kiosk", start + 4 * HOUR_MS)),
        (t.billing, b"ada", _billing("pay-1", "ada", start + 28 * HOUR_MS, "payment",
                                     amount_minor=10_001, currency="USD")),
        (t.billing, b"bob", _billing("pay-2", "bob", start + 28 * HOUR_MS, "payment",
                                     amount_minor=5_000, currency="EUR")),
        (t.billing, b"ada", _billing("sub-1", "ada", start + 28 * HOUR_MS, "subscription_change",
                                     subscription_id="s-1", plan="pro", mrr_minor=2_000,
                                     currency="USD")),
    ]


def _second_round(t, start):
    """More of each kind, so every rate Prometheus computes sees an increase."""
    ts = start + 29 * HOUR_MS
    return [
        (t.page_views, b"kiosk", _view("pv-k2", "kiosk", ts)),
        (t.signups, b"kiosk", _signup("su-k6", "kiosk", "visitor-6", ts)),
        (t.billing, b"ada", _billing("pay-3", "ada", ts, "payment", amount_minor=3_000,
                                     currency="USD")),
        (t.billing, b"ada", _billing("ref-1", "ada", ts, "refund", amount_minor=1_000,
                                     currency="USD", refund_of="pay-1")),
        (t.billing, b"ada", _billing("sub-2", "ada", ts, "subscription_change",
                                     subscription_id="s-1", plan="pro", mrr_minor=3_000,
                                     currency="USD")),
    ]


def _send(settings, records):
    produce(settings, [(topic, key, orjson.dumps(value)) for topic, key, value in records]
            + [(settings.topics.page_views, b"broken", b"{not json")])


def _empty_queries(prometheus) -> list[tuple[str, str]]:
    """Dashboard queries that Prometheus answers with nothing, or only with NaN."""
    empty = []
    for title, expr in build_dashboard.queries(build_dashboard.dashboard()):
        samples = [float(s["value"][1]) for s in prometheus.query(expr)]
        if not samples or all(math.isnan(v) for v in samples):
            empty.append((title, expr))
    return empty


def test_prometheus_sees_the_credited_revenue_and_every_dashboard_panel_has_data(
        settings, start_worker, own_redis, start_prometheus):
    settings = replace(settings, redis_url=own_redis.url)
    t = settings.topics
    worker = start_worker(settings)
    prometheus = start_prometheus(worker)
    assert _eventually(lambda: prometheus.value('up{job="personify-worker"}') == 1)

    start = int(time.time() * 1000) - 30 * HOUR_MS
    _send(settings, _first_round(t, start))
    consume(settings, t.credits, expected=2 * len(MODELS), settle_s=0.5)
    assert _eventually(lambda: prometheus.value("sum(personify_credits_emitted_total)")
                       == 2 * len(MODELS))
    assert _eventually(lambda: prometheus.value(  # the kiosk is public now
        "sum(personify_identity_link_refusals_total)") == 1)
    _send(settings, _second_round(t, start))
    credits = values(consume(settings, t.credits, expected=4 * len(MODELS), settle_s=1))

    linear = sum(c["reporting_amount_minor"] for c in credits if c["model"] == "linear")
    query = 'sum(personify_attributed_revenue_minor_units{model="linear",window="all"})'
    assert _eventually(lambda: prometheus.value(query) == linear), (
        prometheus.value(query), linear)
    assert _eventually(lambda: not _empty_queries(prometheus), timeout_s=40), (
        _empty_queries(prometheus))

    groups = prometheus.api("rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    expected = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
                for rule in group["rules"]}
    assert loaded == expected
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])
