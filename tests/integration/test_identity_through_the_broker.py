"""Identity stitching through the real broker: who owns each touch, as the outputs show it.

Each test runs one worker over fresh 4-partition topics and reads what a consumer of the
pipeline would read: the latest `profile/1` per person on the compacted profiles topic, the
`credit/2` records of each payment, dead letters, and the worker's metrics.

Page views and signups travel on two topics that are not ordered against each other. Where the
owner of a touch depends on which link the device step saw first, a test sends the later part
of the story only after the earlier one is visible (a person's profile or a metric), as a live
device would produce it. Billing is sent with everything else: a credit a touch arrives too late
for is corrected, and the tests read the current credits.
"""

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import orjson
from confluent_kafka import Consumer

from processors.attribution import MODELS
from processors.reference import current_credits
from tests.integration.conftest import consume, produce, values

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
SITE = "https://www.example.com/"
ZERO_ANONYMOUS_ID = "00000000-0000-0000-0000-000000000000"

# Page views and the channel the default rules give them.
PAID_SEARCH = {"url": f"{SITE}?gclid=abc"}
ORGANIC_SEARCH = {"url": SITE, "referrer": "https://www.google.com/"}
ORGANIC_SOCIAL = {"url": SITE, "referrer": "https://www.linkedin.com/"}
EMAIL = {"url": f"{SITE}?utm_source=newsletter&utm_medium=email"}
AI_ASSISTANTS = {"url": SITE, "referrer": "https://chatgpt.com/"}
PAID_SOCIAL = {"url": f"{SITE}?utm_source=facebook&utm_medium=paid_social"}
DIRECT = {"url": SITE}
INTERNAL = {"url": f"{SITE}pricing", "referrer": SITE}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _view(settings, event_id, anonymous_id, ts, visit, user_id=None):
    value = {"schema": "page_view/1", "event_id": event_id, "ts": ts,
             "anonymous_id": anonymous_id, "user_id": user_id, "referrer": None, **visit}
    return settings.topics.page_views, anonymous_id, value


def _signup(settings, event_id, anonymous_id, user_id, ts):
    value = {"schema": "signup/1", "event_id": event_id, "ts": ts, "anonymous_id": anonymous_id,
             "user_id": user_id}
    return settings.topics.signups, anonymous_id, value


def _payment(settings, event_id, user_id, ts, amount_minor=12_000):
    value = {"schema": "billing/1", "event_id": event_id, "ts": ts, "user_id": user_id,
             "kind": "payment", "amount_minor": amount_minor, "currency": "USD"}
    return settings.topics.billing, user_id, value


def _send(settings, events) -> None:
    produce(settings, [(topic, key.encode(), orjson.dumps(value)) for topic, key, value in events])


def _latest_profiles(settings, done: Callable[[dict[str, dict]], bool], timeout_s: float = 30,
                     settle_s: float = 1.0) -> dict[str, dict]:
    """The latest profile per person, read from the start until `done(latest)` holds and then
    nothing more came for `settle_s` (so a later record, or a profile of someone else, counts)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([settings.topics.profiles])
    latest: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    last_arrival = time.monotonic()
    try:
        while not (done(latest) and time.monotonic() - last_arrival >= settle_s):
            assert time.monotonic() < deadline, f"profiles not as expected: {latest}"
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                profile = orjson.loads(msg.value())
                latest[profile["person_id"]] = profile
                last_arrival = time.monotonic()
    finally:
        consumer.close()
    return latest


def _profiles_of(settings, *person_ids: str, payments: int = 0) -> dict[str, dict]:
    """The latest profiles of `person_ids`, once each shows at least `payments` payments."""
    return _latest_profiles(settings, lambda latest: all(
        p in latest and latest[p]["counts"]["payments"] >= payments for p in person_ids))


def _credits(settings, payments: int) -> dict[tuple[str, str], dict]:
    """The current credits of `payments` payments, by (person_id, model): the newest assert of
    each credit id (a touch that arrives after its payment corrects the credit)."""
    records = values(consume(settings, settings.topics.credits, expected=payments * len(MODELS)))
    current = current_credits(records)
    assert len(current) == payments * len(MODELS)
    return {(r["person_id"], r["model"]): r for r in current.values()}


def _channels(credit: dict) -> list[str]:
    return [line["channel"] for line in credit["lines"]]


def _await_metric(worker, name: str, expected: float, timeout_s: float = 20,
                  **labels: str) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.metric(name, **labels) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.metric(name, **labels) == expected, (name, labels)


def test_a_person_seen_on_two_devices_owns_both_and_is_credited_over_both(settings,
                                                                          start_worker):
    worker = start_worker(settings)
    start = _now_ms() - 5 * DAY_MS
    _send(settings, [
        _view(settings, "a-1", "laptop", start, PAID_SEARCH),
        _view(settings, "a-2", "laptop", start + DAY_MS, ORGANIC_SEARCH),
        _signup(settings, "su-ada", "laptop", "ada", start + DAY_MS + 10 * MINUTE_MS),
    ])
    assert _profiles_of(settings, "ada")["ada"]["anonymous_ids"] == ["laptop"]

    _send(settings, [
        _view(settings, "b-1", "phone", start + 2 * DAY_MS, ORGANIC_SOCIAL),
        _view(settings, "b-2", "phone", start + 3 * DAY_MS, EMAIL),
        _view(settings, "b-3", "phone", start + 3 * DAY_MS + 5 * MINUTE_MS, INTERNAL,
              user_id="ada"),
        _payment(settings, "pay-ada", "ada", start + 4 * DAY_MS),
    ])
    credits = _credits(settings, payments=1)
    profile = _profiles_of(settings, "ada", payments=1)["ada"]

    assert profile["anonymous_ids"] == ["laptop", "phone"]
    assert profile["counts"]["touchpoints"] == 4
    assert profile["acquisition_channel"] == "Paid Search"
    assert [line["touch_event_id"] for line in credits["ada", "linear"]["lines"]] == [
        "a-1", "a-2", "b-1", "b-2"]
    assert _channels(credits["ada", "first_touch"]) == ["Paid Search"]
    assert _channels(credits["ada", "last_touch"]) == ["Email"]
    assert worker.metric("personify_touches_stitched_total") == 4
    assert worker.metric("personify_identity_link_refusals_total") == 0


def test_on_a_shared_device_each_touch_goes_to_whoever_signed_up_last_before_it(settings,
                                                                               start_worker):
    worker = start_worker(settings)
    start = _now_ms() - 5 * DAY_MS
    _send(settings, [
        _view(settings, "s-1", "family-laptop", start, PAID_SEARCH),
        _signup(settings, "su-ada", "family-laptop", "ada", start + HOUR_MS),
        _view(settings, "s-2", "family-laptop", start + DAY_MS, ORGANIC_SOCIAL),
        _view(settings, "s-3", "family-laptop", start + 2 * DAY_MS, EMAIL),
        _signup(settings, "su-bob", "family-laptop", "bob", start + 2 * DAY_MS + HOUR_MS),
    ])
    # Bob's link is on the device before anything he viewed after it (the live order).
    _profiles_of(settings, "ada", "bob")
    _send(settings, [
        _view(settings, "s-4", "family-laptop", start + 3 * DAY_MS, ORGANIC_SEARCH),
        _view(settings, "s-5", "family-laptop", start + 3 * DAY_MS + 2 * HOUR_MS, AI_ASSISTANTS),
        _payment(settings, "pay-ada", "ada", start + 4 * DAY_MS),
        _payment(settings, "pay-bob", "bob", start + 4 * DAY_MS),
    ])
    credits = _credits(settings, payments=2)

    assert _channels(credits["ada", "first_touch"]) == ["Paid Search"]
    assert _channels(credits["ada", "last_touch"]) == ["Email"]
    assert len(credits["ada", "linear"]["lines"]) == 3
    assert _channels(credits["bob", "first_touch"]) == ["Organic Search"]
    assert _channels(credits["bob", "last_touch"]) == ["AI Assistants"]
    assert len(credits["bob", "linear"]["lines"]) == 2
    profiles = _profiles_of(settings, "ada", "bob", payments=1)
    assert profiles["ada"]["anonymous_ids"] == profiles["bob"]["anonymous_ids"] == [
        "family-laptop"]
    assert worker.metric("personify_touches_stitched_total") == 5


def test_the_sixth_person_on_a_device_is_refused_and_its_later_anonymous_touches_go_to_nobody(
        settings, start_worker):
    worker = start_worker(settings)
    start = _now_ms() - 5 * DAY_MS
    people = [f"visitor-{n}" for n in range(1, 7)]
    _send(settings, [_signup(settings, f"su-{person}", "kiosk", person, start + n * HOUR_MS)
                     for n, person in enumerate(people)])
    _await_metric(worker, "personify_identity_link_refusals_total", 1, reason="public_device")
    sixth_link_ts = start + 5 * HOUR_MS

    _send(settings, [
        _view(settings, "k-before", "kiosk", sixth_link_ts - 30 * MINUTE_MS, ORGANIC_SOCIAL),
        _view(settings, "k-at", "kiosk", sixth_link_ts, EMAIL),
        _view(settings, "k-after-1", "kiosk", sixth_link_ts + DAY_MS, PAID_SEARCH),
        _view(settings, "k-after-2", "kiosk", sixth_link_ts + 2 * DAY_MS, ORGANIC_SEARCH),
        _payment(settings, "pay-5", "visitor-5", sixth_link_ts + 3 * DAY_MS),
    ])
    credits = _credits(settings, payments=1)

    # The touch before the device went public keeps its owner, the fifth person.
    assert [line["touch_event_id"] for line in credits["visitor-5", "linear"]["lines"]] == [
        "k-before"]
    _await_metric(worker, "personify_touches_dropped_total", 3, reason="public_device")
    assert worker.metric("personify_touches_dropped_total") == 3
    assert worker.metric("personify_touches_stitched_total") == 1
    assert worker.metric("personify_identity_link_refusals_total") == 1
    profiles = _profiles_of(settings, *people)
    assert {p: profiles[p]["anonymous_ids"] for p in people} == {
        **{p: ["kiosk"] for p in people[:5]}, "visitor-6": []}


def test_a_signup_after_thirty_anonymous_visits_credits_every_visit_within_the_lookback(
        settings, start_worker):
    worker = start_worker(settings)
    start = _now_ms() - 6 * DAY_MS
    rotation = [(PAID_SOCIAL, "Paid Social"), (ORGANIC_SEARCH, "Organic Search"),
                (ORGANIC_SOCIAL, "Organic Social"), (EMAIL, "Email"), (DIRECT, "Direct"),
                (AI_ASSISTANTS, "AI Assistants"), (PAID_SEARCH, "Paid Search")]
    visits = [(f"v-{i:02}", start + i * 4 * HOUR_MS, *rotation[i % len(rotation)])
              for i in range(30)]
    signup_ts = visits[-1][1] + HOUR_MS
    _send(settings, [
        _view(settings, "v-old", "browser", _now_ms() - 120 * DAY_MS, PAID_SEARCH),
        *(_view(settings, event_id, "browser", ts, visit) for event_id, ts, visit, _ in visits),
        _signup(settings, "su-ada", "browser", "ada", signup_ts),
        _payment(settings, "pay-ada", "ada", signup_ts + HOUR_MS),
    ])
    credits = _credits(settings, payments=1)

    linear = credits["ada", "linear"]["lines"]
    assert [line["touch_event_id"] for line in linear] == [event_id for event_id, *_ in visits]
    assert sum(line["amount_minor"] for line in linear) == 12_000
    assert {line["amount_minor"] for line in linear} == {400}
    assert _channels(credits["ada", "first_touch"]) == ["Paid Social"]
    assert _channels(credits["ada", "last_touch"]) == [visits[-1][3]]
    assert {credit["acquisition_channel"] for credit in credits.values()} == {"Paid Social"}
    profile = _profiles_of(settings, "ada", payments=1)["ada"]
    assert profile["first_touch_ts"] == start
    assert profile["counts"]["touchpoints"] == 30
    _await_metric(worker, "personify_touches_dropped_total", 1, reason="pending_expired")
    assert worker.metric("personify_touches_stitched_total") == 30


def test_junk_user_and_anonymous_ids_never_link_a_device_to_a_person(settings, start_worker):
    worker = start_worker(settings)
    start = _now_ms() - 3 * DAY_MS
    _send(settings, [
        _view(settings, "u-1", "desk", start, PAID_SEARCH),
        _view(settings, "u-2", "desk", start + HOUR_MS, ORGANIC_SOCIAL, user_id="undefined"),
        _signup(settings, "su-carol", "desk", "carol", start + 2 * HOUR_MS),
        _payment(settings, "pay-carol", "carol", start + 3 * HOUR_MS),
        _signup(settings, "su-null", "tablet", "null", start + 2 * HOUR_MS),
        _view(settings, "z-1", ZERO_ANONYMOUS_ID, start, EMAIL),
        _signup(settings, "su-dave", ZERO_ANONYMOUS_ID, "dave", start + HOUR_MS),
        _payment(settings, "pay-dave", "dave", start + 3 * HOUR_MS),
    ])
    credits = _credits(settings, payments=2)

    # The view with user_id "undefined" is an anonymous touch of the desk, so carol's.
    assert [line["touch_event_id"] for line in credits["carol", "linear"]["lines"]] == [
        "u-1", "u-2"]
    # The all-zero device never linked: dave's journey is empty.
    assert credits["dave", "first_touch"]["acquisition_channel"] == "Unattributed"
    assert [line["touch_event_id"] for line in credits["dave", "first_touch"]["lines"]] == [None]
    profiles = _profiles_of(settings, "carol", "dave", payments=1)
    assert not {"undefined", "null"} & profiles.keys()
    assert profiles["carol"]["anonymous_ids"] == ["desk"]
    assert profiles["dave"]["anonymous_ids"] == []
    dead = values(consume(settings, settings.topics.dead_letters, expected=1))
    assert [d["topic"] for d in dead] == [settings.topics.signups]
    assert orjson.loads(base64.b64decode(dead[0]["original_b64"]))["user_id"] == "null"
    _await_metric(worker, "personify_identity_link_refusals_total", 1, reason="junk_user_id")
    _await_metric(worker, "personify_identity_link_refusals_total", 1,
                  reason="junk_anonymous_id")
    _await_metric(worker, "personify_touches_dropped_total", 1, reason="junk_anonymous_id")
    assert worker.metric("personify_identity_link_refusals_total") == 2
    assert worker.metric("personify_touches_stitched_total") == 2


def test_a_custom_channel_rule_from_the_config_file_names_the_first_touch(settings, start_worker,
                                                                         tmp_path):
    config = tmp_path / "personify.toml"
    config.write_text('version = 1\n\n[channels]\n'
                      'rules = [{ channel = "Partners", match = { source = "^partner-" } }]\n')
    worker = start_worker(replace(settings, config_file=str(config)))
    start = _now_ms() - 3 * DAY_MS
    _send(settings, [
        _view(settings, "p-1", "desk", start,
              {"url": f"{SITE}?utm_source=partner-acme&utm_medium=referral"}),
        _view(settings, "p-2", "desk", start + DAY_MS,
              {"url": f"{SITE}?utm_source=acme-partner&utm_medium=referral"}),
        _signup(settings, "su-erin", "desk", "erin", start + DAY_MS + HOUR_MS),
        _payment(settings, "pay-erin", "erin", start + 2 * DAY_MS),
    ])
    credits = _credits(settings, payments=1)

    first = credits["erin", "first_touch"]
    assert first["acquisition_channel"] == "Partners"
    assert [(line["channel"], line["source"]) for line in first["lines"]] == [
        ("Partners", "partner-acme")]
    # The rule's pattern is searched as written: "acme-partner" does not start with "partner-".
    assert _channels(credits["erin", "last_touch"]) == ["Referral"]
    assert worker.metric("personify_credits_emitted_total", model="first_touch") == 1
