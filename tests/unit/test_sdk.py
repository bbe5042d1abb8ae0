import argparse
import atexit
import logging
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import orjson
import pytest

from personify import send
from personify.sdk import (
    PRODUCER_DEFAULTS,
    UNSENT_AT_CLOSE,
    AmountNotInMinorUnits,
    DeliveryFailed,
    InvalidEvent,
    KafkaUnreachable,
    Personify,
    key_of,
    kind_of_payload,
    payment_payload,
    refund_payload,
    signup_payload,
    subscription_change_payload,
)
from streams.broker import kafka_logger
from streams.partitioner import partition_for
from streams.topology import Settings, Topics

NOW_MS = 1_736_000_000_000
CUSTOM_TOPICS = Topics(page_views="pv-test", signups="su-test", billing="bi-test")
MOCK_CLUSTER = {"test.mock.num.brokers": 1, "log_level": 0, "retry.backoff.ms": 10,
                "topic.metadata.refresh.fast.interval.ms": 10}


def mock_client(topics=None, **overrides):
    """A client on librdkafka's in-process mock cluster: real produce and delivery, no broker."""
    reports = []
    client = Personify(
        "unused:9092", topics=topics, on_delivery=reports.append, clock_ms=lambda: NOW_MS,
        producer_config=MOCK_CLUSTER, **overrides)
    return client, reports


def delivered(client, reports):
    client.flush(10)
    assert all(report.error is None for report in reports)
    return reports


def test_producer_settings_keep_keys_on_faust_partitions_and_exactly_once_per_send():
    assert PRODUCER_DEFAULTS["partitioner"] == "murmur2_random"
    assert PRODUCER_DEFAULTS["enable.idempotence"] is True
    assert PRODUCER_DEFAULTS["acks"] == "all"
    assert PRODUCER_DEFAULTS["compression.type"] in ("lz4", "zstd")
    assert PRODUCER_DEFAULTS["linger.ms"] > 0


@pytest.mark.parametrize(("payload", "topic_kind", "key"), [
    (signup_payload(event_id="e", ts=1, anonymous_id="anon-1", user_id="user-1"),
     "signups", "anon-1"),
    (payment_payload(event_id="e", ts=1, user_id="user-1", amount_minor=1, currency="USD"),
     "billing", "user-1"),
    (refund_payload(event_id="e", ts=1, user_id="user-2", amount_minor=1, currency="USD",
                    refund_of="p"), "billing", "user-2"),
    (subscription_change_payload(event_id="e", ts=1, user_id="user-3", subscription_id="s",
                                 plan="team", mrr_minor=0, currency="EUR"), "billing", "user-3"),
])
def test_events_are_keyed_the_way_the_pipeline_partitions(payload, topic_kind, key):
    assert kind_of_payload(payload) == topic_kind
    assert key_of(topic_kind, payload) == key


def test_page_view_gets_a_uuid4_id_the_clock_time_and_its_device_key():
    client, reports = mock_client()
    event_id = client.page_view("anon-1", "https://www.example.com/?utm_source=x",
                                referrer="https://www.google.com/")
    [report] = delivered(client, reports)
    assert uuid.UUID(event_id).version == 4
    assert (report.topic, report.key) == ("page-views-v1", "anon-1")
    assert report.partition == partition_for(b"anon-1", 4)


def test_each_event_goes_to_its_configured_topic_under_the_contract_key():
    client, reports = mock_client(topics=CUSTOM_TOPICS)
    client.page_view("anon-1", "https://www.example.com/", user_id="user-1", event_id="pv-1",
                     ts="2025-01-01T10:00:00Z")
    client.signup("anon-1", "user-1", traits={"company_size": 40, "country": "DE"})
    payment_id = client.payment("user-1", 4900, "EUR")
    client.refund("user-1", 900, "EUR", payment_id)
    client.subscription_change("user-1", "sub-1", "team", 4900, "EUR")
    routed = [(r.topic, r.key) for r in delivered(client, reports)]
    assert sorted(routed) == sorted([("pv-test", "anon-1"), ("su-test", "anon-1"),
                                     ("bi-test", "user-1"), ("bi-test", "user-1"),
                                     ("bi-test", "user-1")])
    assert client.delivered == 5


@pytest.mark.parametrize(("send_event", "reason"), [
    (lambda c: c.payment("user-1", 0, "USD"), "non_positive_amount"),
    (lambda c: c.payment("user-1", 100, "ZZZ"), "unknown_currency"),
    (lambda c: c.payment("undefined", 100, "USD"), "junk_user_id"),
    (lambda c: c.signup("anon-1", "user-1", ts=86_400_000), "timestamp_too_old"),
    (lambda c: c.page_view("anon-1", ""), "invalid_value"),
    (lambda c: c.subscription_change("user-1", "sub-1", "team", -1, "USD"), "invalid_value"),
])
def test_an_invalid_event_is_refused_at_the_call_site_and_never_sent(send_event, reason):
    client, reports = mock_client()
    with pytest.raises(InvalidEvent, match=reason):
        send_event(client)
    assert delivered(client, reports) == []


def test_a_payload_of_an_unknown_schema_is_refused():
    client, _ = mock_client()
    with pytest.raises(InvalidEvent, match="unknown schema"):
        client.send_event({"schema": "order/1", "event_id": "e"})


def test_send_raw_sends_bytes_as_they_are():
    client, reports = mock_client()
    client.send_raw("billing-v1", None, b"{not json")
    [report] = delivered(client, reports)
    assert (report.topic, report.key) == ("billing-v1", None)


def test_without_a_callback_flush_raises_the_delivery_failures():
    client = Personify("127.0.0.1:1", clock_ms=lambda: NOW_MS,
                       producer_config={"message.timeout.ms": 50, "log_level": 0})
    client.payment("user-1", 4900, "USD")
    with pytest.raises(DeliveryFailed, match="1 event") as failure:
        client.flush(5)
    assert failure.value.failures[0].key == "user-1"
    assert client.failed == 1
    client.close(0)


def test_the_context_manager_flushes_and_stops_the_exit_hook(monkeypatch):
    unregistered = []
    monkeypatch.setattr(atexit, "unregister", unregistered.append)
    with mock_client()[0] as client:
        client.payment("user-1", 4900, "USD")
    assert client.delivered == 1
    assert unregistered == [client._flush_at_exit]


# ----------------------------------------------------------------------- personify send

def page_view_line(topic="page-views-v1", **changes):
    value = {"schema": "page_view/1", "event_id": "pv-1", "ts": NOW_MS, "anonymous_id": "anon-1",
             "user_id": None, "url": "https://www.example.com/", "referrer": None} | changes
    return {"topic": topic, "value": value}


@pytest.mark.parametrize("topic", ["page-views-v1", "pv-test"])
def test_send_routes_default_and_configured_topic_names_to_the_configured_topic(topic):
    client, reports = mock_client(topics=CUSTOM_TOPICS)
    send.produce_line(client, page_view_line(topic))
    [report] = delivered(client, reports)
    assert (report.topic, report.key) == ("pv-test", "anon-1")


def test_send_takes_a_plain_event_line_to_the_topic_its_schema_names():
    client, reports = mock_client(topics=CUSTOM_TOPICS)
    send.produce_line(client, page_view_line()["value"])
    [report] = delivered(client, reports)
    assert (report.topic, report.key) == ("pv-test", "anon-1")


def test_send_produces_raw_lines_under_their_key_unvalidated():
    client, reports = mock_client()
    send.produce_line(client, {"topic": "billing-v1", "key": "0", "raw": '{"kind": "pay',
                               "defect": "bad_json"})
    [report] = delivered(client, reports)
    assert (report.topic, report.key) == ("billing-v1", "0")


@pytest.mark.parametrize(("line", "message"), [
    ({"value": {}}, "topic"),
    (page_view_line("clicks-v1"), "unknown input topic"),
    (page_view_line("billing-v1"), "does not belong"),
    ({"topic": "billing-v1"}, "'value' object or a 'raw' string"),
    ({"topic": "billing-v1", "raw": 12}, "'raw' must be a string"),
    (page_view_line(url=""), "invalid_value"),
])
def test_send_refuses_lines_that_are_not_events(line, message):
    client, _ = mock_client()
    with pytest.raises(InvalidEvent, match=message):
        send.produce_line(client, line)


def test_send_file_delivers_every_line_and_counts_the_bad_ones(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    lines = [orjson.dumps(page_view_line(event_id=f"pv-{n}")) for n in range(20)]
    path.write_bytes(b"\n".join([*lines, b"{broken", orjson.dumps(page_view_line(url=""))]) + b"\n")
    client, _ = mock_client()
    summary = send.send_file(client, path, progress=False)
    assert (summary.lines, summary.delivered, summary.rejected, summary.failed) == (22, 20, 2, 0)
    assert not summary.ok
    assert "events/s" in summary.describe()
    assert "events.jsonl:21" in capsys.readouterr().err


def test_send_command_exit_code_says_whether_everything_was_delivered(tmp_path, monkeypatch):
    monkeypatch.setattr(send, "CLI_PRODUCER_CONFIG", MOCK_CLUSTER)
    parser = argparse.ArgumentParser()
    send.add_arguments(parser)
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_bytes(orjson.dumps(page_view_line()) + b"\n")
    bad.write_bytes(orjson.dumps(page_view_line(url="")) + b"\n")
    settings = Settings()
    assert send.run(parser.parse_args([str(good), "--no-progress"]), settings) == 0
    assert send.run(parser.parse_args([str(bad), "--no-progress"]), settings) == 1


# ------------------------------------------------------------------ nothing lost silently

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_ONLY = ("faust", "mode", "aiokafka", "redis", "rocksdict", "prometheus_client", "tqdm")


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_leaving_the_block_with_no_broker_fails_within_seconds_saying_what_to_do():
    address = f"127.0.0.1:{dead_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable) as unreachable, Personify(
            address, connect_timeout_s=1, clock_ms=lambda: NOW_MS) as client:
        client.payment("user-7", 4900, "EUR")
        client.signup("anon-1", "user-7")
    assert time.monotonic() - started < 5
    assert str(unreachable.value).startswith(
        f"Kafka unreachable at {address} — is the stack up? (`personify stack up`)")
    assert unreachable.value.undelivered == 2
    assert (client.sent, client.delivered, client.failed) == (2, 0, 2)


def test_with_on_error_the_failure_goes_to_the_callback_instead_of_being_raised():
    errors = []
    client = Personify(f"127.0.0.1:{dead_port()}", connect_timeout_s=1, on_error=errors.append,
                       clock_ms=lambda: NOW_MS)
    client.payment("user-7", 4900, "EUR")
    client.close()
    [error] = errors
    assert isinstance(error, KafkaUnreachable) and error.undelivered == 1


def test_close_gives_up_on_what_is_still_queued_and_counts_it():
    client = Personify(f"127.0.0.1:{dead_port()}", connect_timeout_s=60, clock_ms=lambda: NOW_MS)
    client.payment("user-7", 4900, "EUR")
    with pytest.raises(DeliveryFailed, match="1 event") as failure:
        client.close(timeout=0.5)
    assert not isinstance(failure.value, KafkaUnreachable)
    assert failure.value.undelivered == 1
    assert failure.value.failures[0].error == UNSENT_AT_CLOSE


@pytest.mark.parametrize("amount", [49.00, 4900.0])
def test_a_float_amount_is_refused_because_amounts_are_integer_minor_units(amount):
    client, reports = mock_client()
    with pytest.raises(AmountNotInMinorUnits, match="integer minor units") as refused:
        client.payment("user-1", amount, "EUR")
    assert isinstance(refused.value, TypeError) and isinstance(refused.value, InvalidEvent)
    with pytest.raises(TypeError, match="mrr_minor"):
        client.subscription_change("user-1", "sub-1", "team", 49.5, "EUR")
    assert delivered(client, reports) == []


@pytest.mark.parametrize(("url", "referrer"), [
    ("not a url", None), ("/pricing", None), ("ftp://files.example.com/a", None),
    ("www.example.com/pricing", None), ("https://www.example.com/", "google"),
])
def test_a_page_view_needs_an_absolute_http_url_and_an_absolute_referrer(url, referrer):
    client, reports = mock_client()
    with pytest.raises(InvalidEvent, match="URL"):
        client.page_view("anon-1", url, referrer=referrer)
    assert delivered(client, reports) == []


def test_an_app_referrer_is_an_absolute_url_too():
    client, reports = mock_client()
    client.page_view("anon-1", "HTTPS://www.example.com/", referrer="android-app://com.google")
    assert len(delivered(client, reports)) == 1


def test_track_sends_any_contract_event_filling_in_its_id_and_time():
    client, reports = mock_client()
    event_id = client.track({"schema": "billing/1", "user_id": "user-1", "kind": "payment",
                             "amount_minor": 4900, "currency": "EUR"})
    client.track({"schema": "signup/1", "event_id": "su-1", "ts": "2025-01-01T10:00:00Z",
                  "anonymous_id": "anon-1", "user_id": "user-1", "traits": None})
    assert uuid.UUID(event_id).version == 4
    assert sorted((r.topic, r.key) for r in delivered(client, reports)) == [
        ("billing-v1", "user-1"), ("signups-v1", "anon-1")]
    with pytest.raises(InvalidEvent, match="unknown schema"):
        client.track({"schema": "order/1"})
    with pytest.raises(AmountNotInMinorUnits):
        client.track({"schema": "billing/1", "user_id": "user-1", "kind": "payment",
                      "amount_minor": 49.0, "currency": "EUR"})


def test_the_broker_and_topics_come_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("PERSONIFY_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("PERSONIFY_TOPIC_BILLING", "billing-eu")
    client = Personify(producer_config={"log_level": 0})
    assert client.bootstrap_servers == "127.0.0.1:1"
    assert client.topics.billing == "billing-eu"
    assert Personify("127.0.0.1:2", producer_config={"log_level": 0}).bootstrap_servers == \
        "127.0.0.1:2"


def test_librdkafka_lines_go_through_logging_one_per_kind_of_failure():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = kafka_logger()
    logger.addHandler(handler)
    try:
        for after in ("0ms", "1ms", "0ms"):
            logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1",
                       f"[thrd:b/bootstrap]: b/bootstrap: Connect failed (after {after})")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "kafka FAIL: b/bootstrap: Connect failed (after 0ms)"]


def test_the_base_install_is_the_sdk_and_the_pipeline_is_an_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split("==")[0] for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    pipeline = {d.split("[")[0].split("==")[0] for d in extras["pipeline"]}
    assert base == {"confluent-kafka", "orjson", "fastjsonschema"}
    assert {"faust-streaming", "redis", "tqdm"} <= pipeline


def test_the_sdk_works_without_any_of_the_pipeline_dependencies():
    """The pipeline's packages cannot even be imported: the SDK validates and sends anyway."""
    program = f"""
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PIPELINE_ONLY!r}:
            raise ImportError(f"{{name}} is not installed")
sys.meta_path.insert(0, Absent())
from personify.sdk import Personify
reports = []
client = Personify("unused:9092", on_delivery=reports.append,
                   producer_config={MOCK_CLUSTER!r})
client.payment("user-1", 4900, "EUR")
client.close(10)
assert [r.error for r in reports] == [None], reports
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {PIPELINE_ONLY!r} + ("streams.app",))
print(loaded)
"""
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == "[]"


def test_spend_goes_to_the_spend_topic_keyed_by_its_campaign_on_todays_utc_day():
    client, reports = mock_client()
    event_id = client.spend("google", "cpc", "brand", 125_000, "USD")
    [report] = delivered(client, reports)
    assert (report.topic, report.key) == ("marketing-spend-v1", "google/cpc/brand")
    assert report.partition == partition_for(b"google/cpc/brand", 4)
    assert uuid.UUID(event_id).version == 4


def test_spend_for_a_time_that_is_not_a_days_start_is_refused_at_the_call_site():
    client, reports = mock_client()
    with pytest.raises(InvalidEvent, match="invalid_value"):
        client.spend("google", "cpc", "brand", 100, "USD", day_ms=NOW_MS // 86_400_000
                     * 86_400_000 + 1)
    assert delivered(client, reports) == []
