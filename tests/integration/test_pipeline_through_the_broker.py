import time

import orjson

from processors.attribution import MODELS
from tests.integration.conftest import consume, produce, values

HOUR_MS = 3_600_000


def _page_view(event_id, anonymous_id, ts, url, referrer=None, user_id=None):
    return {"schema": "page_view/1", "event_id": event_id, "ts": ts, "anonymous_id": anonymous_id,
            "user_id": user_id, "url": url, "referrer": referrer}


def test_a_payment_is_credited_to_the_touches_of_the_person_who_signed_up(settings, start_worker):
    worker = start_worker(settings)
    t = settings.topics
    start = int(time.time() * 1000) - 48 * HOUR_MS
    journey = [
        (t.page_views, b"dev-1", _page_view(
            "pv-1", "dev-1", start, "https://www.example.com/?utm_source=google&utm_medium=cpc")),
        (t.page_views, b"dev-1", _page_view(
            "pv-2", "dev-1", start + 60_000, "https://www.example.com/pricing",
            referrer="https://www.example.com/")),
        (t.page_views, b"dev-1", _page_view(
            "pv-3", "dev-1", start + 26 * HOUR_MS, "https://www.example.com/",
            referrer="https://www.linkedin.com/")),
        (t.signups, b"dev-1", {"schema": "signup/1", "event_id": "su-1",
                               "ts": start + 27 * HOUR_MS, "anonymous_id": "dev-1",
                               "user_id": "ada", "traits": {"company_size": 250}}),
    ]
    produce(settings, [(topic, key, orjson.dumps(value)) for topic, key, value in journey])
    profiles = values(consume(settings, t.profiles, expected=1, settle_s=3))
    assert profiles[-1]["person_id"] == "ada" and profiles[-1]["segment"] == "Mid-Market"

    payment = {"schema": "billing/1", "event_id": "pay-1", "ts": start + 28 * HOUR_MS,
               "user_id": "ada", "kind": "payment", "amount_minor": 10_001, "currency": "USD"}
    produce(settings, [(t.billing, b"ada", orjson.dumps(payment))])
    credits = {c["model"]: c for c in values(consume(settings, t.credits, expected=len(MODELS)))}

    assert set(credits) == set(MODELS)
    for credit in credits.values():
        assert credit["credit_id"] == f"pay-1/{credit['model']}"
        assert credit["acquisition_channel"] == "Paid Search"
        assert sum(line["amount_minor"] for line in credit["lines"]) == 10_001
    assert [line["channel"] for line in credits["first_touch"]["lines"]] == ["Paid Search"]
    assert [line["channel"] for line in credits["last_touch"]["lines"]] == ["Organic Social"]
    assert [line["amount_minor"] for line in credits["linear"]["lines"]] == [5_001, 5_000]
    assert worker.metric("personify_credits_emitted_total") == len(MODELS)


def test_every_consumed_event_is_processed_or_dead_lettered_per_topic(settings, start_worker):
    worker = start_worker(settings)
    t = settings.topics
    now = int(time.time() * 1000)
    good_views = [(t.page_views, f"d{i}".encode(), orjson.dumps(_page_view(
        f"v{i}", f"d{i}", now - i, "https://www.example.com/"))) for i in range(40)]
    bad_views = [
        (t.page_views, b"x", b"{not json"),
        (t.page_views, b"x", b"[1, 2]"),
        (t.page_views, b"x", b"\xff\xfe"),
        (t.page_views, b"x", orjson.dumps({"schema": "page_view/1", "event_id": "m1"})),
        (t.page_views, b"d0", orjson.dumps(_page_view("v0", "d0", now, "https://www.example.com/"))),
    ]
    signups = [(t.signups, f"d{i}".encode(), orjson.dumps({
        "schema": "signup/1", "event_id": f"s{i}", "ts": now, "anonymous_id": f"d{i}",
        "user_id": f"u{i}"})) for i in range(10)]
    bad_signups = [(t.signups, b"d1", orjson.dumps({
        "schema": "signup/1", "event_id": "s-junk", "ts": now, "anonymous_id": "d1",
        "user_id": "undefined"}))]
    billing = [(t.billing, f"u{i}".encode(), orjson.dumps({
        "schema": "billing/1", "event_id": f"p{i}", "ts": now, "user_id": f"u{i}",
        "kind": "payment", "amount_minor": 1000 + i, "currency": "EUR"})) for i in range(10)]
    bad_billing = [
        (t.billing, b"u1", orjson.dumps({"schema": "billing/1", "event_id": "p-neg", "ts": now,
                                         "user_id": "u1", "kind": "payment", "amount_minor": -5,
                                         "currency": "EUR"})),
        (t.billing, b"u1", orjson.dumps({"schema": "billing/1", "event_id": "r-x", "ts": now,
                                         "user_id": "u1", "kind": "refund", "amount_minor": 5,
                                         "currency": "EUR", "refund_of": "nope"})),
        (t.billing, b"u2", orjson.dumps({"schema": "billing/1", "event_id": "p-xx", "ts": now,
                                         "user_id": "u2", "kind": "payment", "amount_minor": 5,
                                         "currency": "XXQ"})),
    ]
    produce(settings, good_views + signups + billing)
    produce(settings, bad_views + bad_signups + bad_billing)

    dead = values(consume(settings, t.dead_letters, expected=8, timeout_s=90, settle_s=3))
    by_topic: dict[str, int] = {}
    for record in dead:
        by_topic[record["topic"]] = by_topic.get(record["topic"], 0) + 1
    assert by_topic == {t.page_views: 4, t.signups: 1, t.billing: 3}
    assert {r["reason"] for r in dead} >= {"not_json", "not_an_object", "junk_user_id",
                                           "non_positive_amount", "refund_unknown_payment"}
    consume(settings, t.credits, expected=10 * len(MODELS), timeout_s=90)
    for topic, sent in ((t.page_views, 45), (t.signups, 11), (t.billing, 13)):
        consumed = worker.metric("personify_events_consumed_total", topic=topic)
        processed = worker.metric("personify_events_processed_total", topic=topic)
        dead_lettered = worker.metric("personify_dead_letters_total", topic=topic)
        duplicates = worker.metric("personify_duplicate_events_total", topic=topic)
        assert consumed == sent
        assert consumed == processed + duplicates + dead_lettered
        assert dead_lettered == by_topic[topic]
    assert worker.metric("personify_duplicate_events_total", topic=t.page_views) == 1


def test_a_record_the_worker_fails_on_is_dead_lettered_and_the_stream_goes_on(settings,
                                                                             start_worker):
    worker = start_worker(settings)
    t = settings.topics
    produce(settings, [(t.person_events, b"ada", b"not an internal record")])
    dead = values(consume(settings, t.dead_letters, expected=1))
    assert dead[0]["reason"] == "processing_error"
    assert dead[0]["topic"] == t.person_events
    now = int(time.time() * 1000)
    produce(settings, [(t.billing, b"ada", orjson.dumps({
        "schema": "billing/1", "event_id": "pay-after", "ts": now, "user_id": "ada",
        "kind": "payment", "amount_minor": 100, "currency": "USD"}))])
    assert len(consume(settings, t.credits, expected=len(MODELS))) == len(MODELS)
    assert worker.metric("personify_dead_letters_total", reason="processing_error") == 1
