from typing import Any

import pytest

from processors.segment import DEFAULT_TRACK_EVENTS, Mapped, to_contract
from processors.validation import Reason, Rejection

RECEIVED_MS = 1_741_161_600_000


def mapped(message: dict[str, Any]) -> Mapped:
    result = to_contract(message, received_ms=RECEIVED_MS, track_events=DEFAULT_TRACK_EVENTS)
    assert isinstance(result, Mapped), result
    return result


def refused(message: dict[str, Any]) -> Rejection:
    result = to_contract(message, received_ms=RECEIVED_MS, track_events=DEFAULT_TRACK_EVENTS)
    assert isinstance(result, Rejection), result
    return result


MAPPING_CASES = [
    (
        {"type": "page", "messageId": "m1", "anonymousId": "a1", "userId": None,
         "timestamp": "2025-03-05T08:00:00.250Z",
         "context": {"page": {"url": "https://x.com/?utm_source=g", "referrer": "https://g.com/"},
                     "campaign": {"source": "google", "medium": "cpc", "other": "x"}}},
        "page_view",
        {"schema": "page_view/1", "event_id": "m1", "ts": "2025-03-05T08:00:00.250Z",
         "anonymous_id": "a1", "user_id": None, "url": "https://x.com/?utm_source=g",
         "referrer": "https://g.com/", "campaign": {"source": "google", "medium": "cpc"}},
    ),
    (
        {"type": "page", "messageId": "m2", "anonymousId": "a1", "userId": "u1",
         "originalTimestamp": "2025-03-05T08:00:00Z",
         "properties": {"url": "https://x.com/a", "referrer": ""},
         "context": {"page": {"url": "https://x.com/ignored"}}},
        "page_view",
        {"schema": "page_view/1", "event_id": "m2", "ts": "2025-03-05T08:00:00Z",
         "anonymous_id": "a1", "user_id": "u1", "url": "https://x.com/a", "referrer": None},
    ),
    (
        {"type": "identify", "messageId": "m3", "anonymousId": "a1", "userId": "u1",
         "traits": {"email": "ada@example.com", "name": "Ada", "plan": "team",
                    "company": {"name": "Acme", "employee_count": 250, "industry": "SaaS"},
                    "address": {"country": "DE"}}},
        "signup",
        {"schema": "signup/1", "event_id": "m3", "ts": RECEIVED_MS, "anonymous_id": "a1",
         "user_id": "u1", "traits": {"company": "Acme", "company_size": 250, "industry": "SaaS",
                                     "plan": "team", "country": "DE"}},
    ),
    (
        {"type": "identify", "messageId": "m4", "anonymousId": "a1", "userId": "u1",
         "traits": {"email": "ada@example.com"}},
        "signup",
        {"schema": "signup/1", "event_id": "m4", "ts": RECEIVED_MS, "anonymous_id": "a1",
         "user_id": "u1", "traits": None},
    ),
    (
        {"type": "track", "event": "Order Completed", "messageId": "m5", "userId": "u1",
         "timestamp": "2025-03-05T08:00:00Z",
         "properties": {"amount_minor": 4900, "currency": "EUR", "total": 49.0}},
        "billing",
        {"schema": "billing/1", "event_id": "m5", "ts": "2025-03-05T08:00:00Z", "user_id": "u1",
         "kind": "payment", "amount_minor": 4900, "currency": "EUR"},
    ),
    (
        {"type": "track", "event": "Order Refunded", "messageId": "m6", "userId": "u1",
         "properties": {"amount_minor": 900, "currency": "EUR", "refund_of": "m5"}},
        "billing",
        {"schema": "billing/1", "event_id": "m6", "ts": RECEIVED_MS, "user_id": "u1",
         "kind": "refund", "amount_minor": 900, "currency": "EUR", "refund_of": "m5"},
    ),
    (
        {"type": "track", "event": "Subscription Changed", "messageId": "m7", "userId": "u1",
         "properties": {"subscription_id": "s1", "plan": "pro", "mrr_minor": 9900,
                        "currency": "USD"}},
        "billing",
        {"schema": "billing/1", "event_id": "m7", "ts": RECEIVED_MS, "user_id": "u1",
         "kind": "subscription_change", "subscription_id": "s1", "plan": "pro",
         "mrr_minor": 9900, "currency": "USD"},
    ),
    (
        {"type": "track", "event": "Signed Up", "messageId": "m8", "userId": "u1",
         "anonymousId": "a1", "properties": {"plan": "trial", "first_name": "Ada"}},
        "signup",
        {"schema": "signup/1", "event_id": "m8", "ts": RECEIVED_MS, "anonymous_id": "a1",
         "user_id": "u1", "traits": {"plan": "trial"}},
    ),
]


@pytest.mark.parametrize(("message", "kind", "payload"), MAPPING_CASES,
                         ids=[case[0]["messageId"] for case in MAPPING_CASES])
def test_segment_messages_map_onto_the_contract_field_by_field(message, kind, payload):
    result = mapped(message)
    assert (result.kind, result.payload) == (kind, payload)


def test_missing_ids_stay_missing_so_validation_names_them():
    payload = mapped({"type": "page", "context": {"page": {"url": "https://x.com/"}}}).payload
    assert "event_id" not in payload and "anonymous_id" not in payload


@pytest.mark.parametrize("name", ["Button Clicked", "order completed", None, 42])
def test_a_track_event_without_a_mapping_is_unmapped(name):
    rejection = refused({"type": "track", "event": name, "messageId": "m"})
    assert rejection.reason is Reason.UNMAPPED_EVENT
    assert "Order Completed" in rejection.message


@pytest.mark.parametrize("kind", ["screen", "group", "alias", "nonsense", None])
def test_calls_other_than_page_identify_and_track_are_unmapped(kind):
    assert refused({"type": kind, "messageId": "m"}).reason is Reason.UNMAPPED_EVENT


@pytest.mark.parametrize("field", ["revenue", "total", "value", "price"])
def test_major_unit_amounts_are_refused_never_converted(field):
    rejection = refused({"type": "track", "event": "Order Completed", "messageId": "m",
                         "userId": "u1", "properties": {field: 49.99, "currency": "USD"}})
    assert rejection.reason is Reason.MISSING_FIELD
    assert "amount_minor" in rejection.message and field in rejection.message


def test_configured_track_names_map_too():
    result = to_contract({"type": "track", "event": "Payment Received", "messageId": "m",
                          "userId": "u1", "properties": {"amount_minor": 100, "currency": "USD"}},
                         received_ms=RECEIVED_MS,
                         track_events={**DEFAULT_TRACK_EVENTS, "Payment Received": "payment"})
    assert isinstance(result, Mapped) and result.payload["kind"] == "payment"
